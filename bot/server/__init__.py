"""`asyncguard serve`: the self-hosted webhook server, asyncguard as a GitHub App.

Read the modules in the order a delivery travels through them:

- `settings.py`  the environment (and an optional `.env`) -> a validated, frozen `Settings`
- `signature.py` `X-Hub-Signature-256`: HMAC-SHA256 of the raw body, compared in constant time
- `app.py`       the FastAPI application: `POST /webhook`, `GET /healthz`, `GET /readyz`
- `jobs.py`      the scheduler: duplicate deliveries, superseded heads, per-repository limits,
                 the bounded queue, retries with backoff, the worker process pool
- `auth.py`      the GitHub App's JWT and the installation tokens, cached until shortly before
                 they expire
- `worker.py`    what runs in a worker process: `review_pull_request`, the same poster as the
                 Action's
- `logs.py`      one JSON line per event
- `main.py`      `asyncguard serve`: arguments, settings errors, uvicorn
"""
