#!/usr/bin/env bash
# The installed package must run without the source tree (issue 11).
#
# 1. Build semon's wheel from the sources git knows; any setuptools warning fails the step.
# 2. Install it into a fresh virtualenv outside the checkout and, from a directory outside the
#    checkout, run .ci/wheel_smoke.py: the files read at run time are in the install, `semon
#    collect` + `semon api` (SQLite, a Mosquitto started here) raise and serve one trapped-passenger
#    alarm, the board and `semon dashboards push` work, and `semon demo` raises its own.
# 3. Do what the Dockerfile does — `COPY . /src` (honouring .dockerignore), `pip install .` in
#    /src, `rm -rf /src`, run from /data with SEMON_DATA_DIR=/data/semon-data — in another fresh
#    virtualenv, and run the same smoke (collector + API) there.
# Exits non-zero on the first failure. Work files go to a mktemp directory, removed on success
# (WHEEL_SMOKE_KEEP=1 keeps them). WHEEL_SMOKE_PYTHON picks the interpreter (default python3).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${WHEEL_SMOKE_PYTHON:-python3}"
started=$SECONDS

say() { echo "wheel-smoke: [$((SECONDS - started)) s] $*"; }
fail() { echo "wheel-smoke FAILED: $*" >&2; exit 1; }
# install LOG CMD…: run a pip install with its output in LOG, shown only when it fails.
install() {
  local log=$1; shift
  "$@" >"$log" 2>&1 || { tail -n 40 "$log" >&2; fail "'$*' failed in $PWD (log above)"; }
}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "$python is older than 3.11 (requires-python)"

# The Docker reproduction below follows these lines; if they change, change it too.
for line in 'WORKDIR /src' 'COPY . /src' 'RUN pip install . && rm -rf /src' 'WORKDIR /data' \
  'ENV SEMON_DATA_DIR=/data/semon-data'; do
  grep -qxF "$line" "$repo/Dockerfile" || fail "Dockerfile has no line '$line': update .ci/wheel_smoke.sh to match it"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/semon-wheel-smoke.XXXXXX")"
case "$work/" in "$repo"/*) fail "work directory $work is inside the checkout" ;; esac
cleanup() {
  local rc=$?
  if [ -n "${docker_install:-}" ] && kill -0 "$docker_install" 2>/dev/null; then
    pkill -TERM -P "$docker_install" 2>/dev/null || true # its pip (timeout passes the signal on)
    kill "$docker_install" 2>/dev/null || true
    wait "$docker_install" 2>/dev/null || true
  fi
  if [ "$rc" -eq 0 ] && [ -z "${WHEEL_SMOKE_KEEP:-}" ]; then rm -rf "$work"; else echo "wheel-smoke: work files kept in $work" >&2; fi
}
trap cleanup EXIT
# The smoke runs from outside the checkout, so its helper does too.
cp "$repo/.ci/wheel_smoke.py" "$work/wheel_smoke.py"
helper="$work/wheel_smoke.py"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Unset for builds only: with it, distutils prints "byte-compiling is disabled" warnings that
# would hide (or be mistaken for) real ones in the build log.
nobc=(env -u PYTHONDONTWRITEBYTECODE)

say "building the wheel (work files in $work)"
"$python" "$helper" copy-git "$repo" "$work/src"
"$python" -m venv "$work/venv-wheel"
if ! "${nobc[@]}" timeout 300 "$work/venv-wheel/bin/pip" wheel -v --no-deps -w "$work/dist" "$work/src" \
  >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  fail "pip wheel failed (log above)"
fi
"$python" "$helper" check-build-log "$work/build.log"
wheel=$(ls "$work"/dist/semon-*.whl)
rm -rf "$work/src"
say "built $(basename "$wheel"); collecting its dependencies"
# One resolution from the usual indexes (and pip's cache) into a wheelhouse; both fresh
# virtualenvs then install from it alone. The build backend goes in too, for `pip install .`.
install "$work/wheelhouse.log" timeout 600 "$work/venv-wheel/bin/pip" wheel -w "$work/wheelhouse" "$wheel" \
  'setuptools>=77' wheel
offline=(--no-index --find-links "$work/wheelhouse")
install "$work/install-wheel.log" timeout 600 "$work/venv-wheel/bin/pip" install "${offline[@]}" "$wheel"

# The Dockerfile's install, in the background while the wheel's smoke runs (it mostly waits).
(
  "$python" "$helper" copy-docker "$repo" "$work/docker/src"
  "$python" -m venv "$work/venv-docker"
  cd "$work/docker/src"
  install "$work/install-docker.log" "${nobc[@]}" timeout 600 "$work/venv-docker/bin/pip" install "${offline[@]}" .
  rm -rf "$work/docker/src"
) >"$work/docker-install.out" 2>&1 &
docker_install=$!

say "the wheel, installed into a fresh virtualenv, run from $work/run-wheel"
mkdir "$work/run-wheel"
(cd "$work/run-wheel" && "$work/venv-wheel/bin/python" -I "$helper" smoke --checkout "$repo" --logs logs --demo) ||
  fail "the installed wheel does not run (see above)"

say "the Dockerfile's install: COPY . /src (.dockerignore), pip install ., rm -rf /src, run from /data"
wait "$docker_install" || { cat "$work/docker-install.out" >&2; fail "the Docker-style install failed (above)"; }
cat "$work/docker-install.out"
[ ! -e "$work/docker/src" ] || fail "the Docker-style source copy was not removed"
mkdir -p "$work/docker/data"
(
  cd "$work/docker/data"
  "$work/venv-docker/bin/python" -I -c 'import semon.cli, semon.api.app, semon.ingest.collector, semon.simulators.run' ||
    fail "semon does not import once /src is gone"
  "$work/venv-docker/bin/semon" --help >/dev/null || fail "semon --help (the image's CMD) failed"
  "$work/venv-docker/bin/python" -I "$helper" smoke --checkout "$repo" --logs logs
) || fail "the Docker-style install does not run (see above)"
say "PASS: the wheel and the Dockerfile-style install both run"
# The plain closing line CI reads: two smoke runs (wheel, Docker-style install).
echo "smoke: 2 passed, 0 failed"
