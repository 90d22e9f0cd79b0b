"""An S3-compatible server for etl's tests: moto, on 127.0.0.1, serving one
request at a time so that conditional puts (If-None-Match: *, which Delta
commits rely on) are checked and written atomically. moto's own
`moto_server` is threaded and checks then writes without a lock.

Usage: python s3_test_server.py PORT
"""

import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

run_simple(
    "127.0.0.1",
    int(sys.argv[1]),
    DomainDispatcherApplication(create_backend_app),
    threaded=False,
    request_handler=MotoRequestHandler,
)
