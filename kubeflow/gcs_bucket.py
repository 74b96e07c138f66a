"""The bucket of a ``gs://`` URL checked as Cloud Storage names buckets, before the spec compiles: a name it
cannot have (the README's ``gs://BUCKET/…`` pasted as is, upper case) is a bucket no pod will find, found only when
a task first opens it.

Cloud Storage's rules (cloud.google.com/storage/docs/buckets#naming): lowercase letters, digits, ``-``, ``_`` and
``.``, beginning and ending with a letter or digit. Its length rule (3 to 63 characters) is not checked.
"""
from __future__ import annotations

import re

PLACEHOLDER = "BUCKET"   # kubeflow/README.md's and kubeflow_runner.py's examples
RULE = "lowercase letters, digits, -, _ or ., beginning and ending with a letter or digit"
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")


def problem(url: str) -> str | None:
    """Why Cloud Storage has no bucket of the name ``url`` (``gs://…``) gives, or None (also for any other URL or
    path)."""
    if not url.startswith("gs://"):
        return None
    bucket = url[len("gs://"):].split("/", 1)[0]
    if bucket == PLACEHOLDER:
        return f"{PLACEHOLDER} is kubeflow/README.md's placeholder: name your bucket"
    if _NAME.fullmatch(bucket):
        return None
    return f"the bucket name {bucket!r} is not one Cloud Storage allows ({RULE})"
