#!/bin/sh
# Issue a private CA, a broker (server) certificate and one client certificate with openssl,
# for Mosquitto's TLS listener (tls/tls.conf) and semon's mqtts:// clients. docs/tls.md.
#
#   config/mosquitto/make-certs.sh OUT_DIR [SERVER_NAME ...]
#
# SERVER_NAMEs (default: localhost 127.0.0.1 mosquitto) go into the server certificate's
# subjectAltName: clients check the host they dial against it, so list every name and address
# terminals and collectors use. Existing files in OUT_DIR are never overwritten: delete them
# to re-issue. Keys are written 0600.
set -eu
out=${1:?usage: make-certs.sh OUT_DIR [SERVER_NAME ...]}
shift
[ "$#" -gt 0 ] || set -- localhost 127.0.0.1 mosquitto
mkdir -p "$out"
cd "$out"
umask 077
days_ca=3650
days_leaf=825  # the longest leaf lifetime common clients accept

san=""
for n in "$@"; do
    case "$n" in
        *[!0-9.]*) kind=DNS ;;  # anything but digits and dots is a name (IPv6: use IP: yourself)
        *) kind=IP ;;
    esac
    san="${san:+$san,}$kind:$n"
done

if [ ! -e ca.crt ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days "$days_ca" -keyout ca.key -out ca.crt \
        -subj "/O=semon/CN=semon MQTT CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

leaf() {  # leaf NAME CN EXTENDED_KEY_USAGE [SAN]
    [ -e "$1.crt" ] && return 0
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$1.key" -out "$1.csr" -subj "/O=semon/CN=$2"
    ext="$1.ext"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$3"
        [ -n "${4:-}" ] && echo "subjectAltName=$4"
    } >"$ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days_leaf" -sha256 \
        -extfile "$ext" -out "$1.crt"
    rm -f "$1.csr" "$ext"
}

leaf server "$1" serverAuth "$san"
leaf client semon-client clientAuth
chmod 0644 ca.crt server.crt client.crt
# Mosquitto in the eclipse-mosquitto image runs as uid 1883: it must be able to read its key.
chmod 0644 server.key
echo "CA, server (SAN $san) and client certificates in $out"
