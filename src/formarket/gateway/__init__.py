"""The inference gateway: OpenAI-compatible access to running deployments, and the only
trusted meter of their use.

    app         the gateway's logic: authenticate, limit, check, route, forward, meter
    protocol    HTTP/1.1 on the callers' connections (httptools), each request an exchange
    wire        OpenAI's request types and error shape; openapi: the OpenAPI document
    keys        API keys, stored hashed; limits: per-key rates and daily quotas
    credit      prepaid credit held per call; included: subscriptions' included usage
    routes      where calls go (RouteTable; routes.json until the farm publishes endpoints)
    upstream    HTTP/1.1 to deployments over pooled connections; sse: streams event by event
    tokens      token counts and what is billed: the first n choices, cut at max_tokens
    tokenizer   exact counts with a listing's own tokenizer; ceilings: size and time bounds
    meter       the gateway's side of the usage spool (formarket.usage: events, spool)
    flush       sealed spool segments -> registry/usage/ in git, each event exactly once
    show        committed usage, summed per listing version
    server      the parts wired together and run by uvicorn; config: settings, state folder
    watch       keys and routes files re-read while the gateway runs

Everything but app, protocol, upstream, credit, included, meter, flush, server and watch is
pure.
"""
