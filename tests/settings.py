"""Settings for the test suite: the real settings, with a private var/ and a test-only key.

VAR_DIR defaults to var/test so that `make test` never shares the SQLite file or
the embedded Redis socket with a `make run` going on beside it.
"""

import os

from tradingsite.config import BASE_DIR

os.environ.setdefault("VAR_DIR", str(BASE_DIR / "var" / "test"))
os.environ.setdefault("SECRET_KEY", "test-suite-only-not-a-secret")
# A fixed, test-only Fernet key (32 zero-ish bytes); production keys come from the environment.
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1zdWl0ZS1vbmx5LWZlcm5ldC1rZXktMzJieXQ=")

from tradingsite.settings import *  # noqa: F403
