"""Fixtures for pg_retention's S3 tests, against a real S3 server on loopback (moto, or s3s-fs):
made and read with boto3, AWS's own SDK, so that what the tests check is what S3 says.

    python3 tests/s3/servers.py ENDPOINT ACCESS SECRET COMMAND ARGS...

Commands (each prints JSON):
  bucket NAME [versioned] [locked]     make a bucket (versioning on; object lock on)
  put NAME KEY [N]                     put N versions of KEY (default 1); prints their version ids
  hold NAME KEY VERSION                put a legal hold on a version (an object-lock bucket)
  marker NAME KEY                      add a delete marker to KEY
  versions NAME                        every version and delete marker: [[key, version, is_marker], ...]
  keys NAME                            every current key
  bench NAME N                         put N empty objects bench/0..N-1 (for the benchmark)
  delete_all NAME PREFIX N             boto3's delete_objects, 1,000 keys a request, of PREFIX0..PREFIX{N-1}; prints seconds
"""
import json
import sys
import time

import boto3
from botocore.config import Config


def client(endpoint, access, secret):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def main():
    endpoint, access, secret, command, *args = sys.argv[1:]
    s3 = client(endpoint, access, secret)
    out = None
    if command == "bucket":
        name = args[0]
        s3.create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if "locked" in args else {}))
        if "versioned" in args or "locked" in args:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        out = name
    elif command == "put":
        name, key = args[0], args[1]
        n = int(args[2]) if len(args) > 2 else 1
        out = [s3.put_object(Bucket=name, Key=key, Body=b"audio %d" % i).get("VersionId") for i in range(n)]
    elif command == "hold":
        s3.put_object_legal_hold(Bucket=args[0], Key=args[1], VersionId=args[2], LegalHold={"Status": "ON"})
        out = "held"
    elif command == "marker":
        out = s3.delete_object(Bucket=args[0], Key=args[1]).get("VersionId")
    elif command == "versions":
        out = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=args[0]):
            out += [[v["Key"], v["VersionId"], False] for v in page.get("Versions", [])]
            out += [[m["Key"], m["VersionId"], True] for m in page.get("DeleteMarkers", [])]
        out.sort()
    elif command == "keys":
        out = sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0]) for o in page.get("Contents", []))
    elif command == "bench":
        name, n = args[0], int(args[1])
        for i in range(n):
            s3.put_object(Bucket=name, Key="bench/%d" % i, Body=b"")
        out = n
    elif command == "delete_all":
        name, prefix, n = args[0], args[1], int(args[2])
        keys = ["%s%d" % (prefix, i) for i in range(n)]
        started = time.monotonic()
        for i in range(0, n, 1000):
            s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": False})
        out = time.monotonic() - started
    else:
        sys.exit("unknown command " + command)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
