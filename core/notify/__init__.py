"""Alert delivery (docs/alerts.md): every alarm transition to the firms, owners and the regulator.

The transitions themselves are the ``alarm_events`` rows (whichever process stored them). From
there:

* **MQTT** — the collector publishes them on ``semon/v1/alarms/{firm}/{device}`` (QoS 1) and
  marks ``published_at`` only after the broker's PUBACK (``semon.ingest.collector``);
* **webhooks** — the :class:`~semon.notify.dispatcher.Dispatcher` scans new rows by an id
  watermark kept in the database, writes one outbox row per transition × matching webhook
  (:mod:`semon.notify.outbox`) and drains the outbox with signed, retried POSTs
  (:mod:`semon.notify.webhooks`);
* **Server-Sent Events** — ``GET /alarms/stream`` reads the rows through the caller's tenancy
  (:mod:`semon.notify.sse`), resumable by ``Last-Event-ID``;
* **escalation** — the dispatcher also escalates unacknowledged alarms and overdue rescue
  arrivals to the regulator (:mod:`semon.notify.escalation`) and opens a rescue record for every
  trapped-passenger alarm (:mod:`semon.rules.rescue`).
"""
