"""The live decisions dashboard (`multichannel dashboard`): a web application over its own
materialized view of the output topics, rebuilt from Kafka on every start.

```
Kafka (read_committed, assigned partitions, from the beginning)
  └─ feed.Feed (thread) ─ decode.OutputDecoder ─▶ view.View (under its lock)
                                                     │
  browser ◀─ app (Starlette on uvicorn) ◀─ queries ──┘   pages (Jinja2) · /api/... (JSON, CSV) · /api/stream (SSE)
```
"""
