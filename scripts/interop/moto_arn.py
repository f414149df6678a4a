#!/usr/bin/env python3
"""Which assumed-role ARN moto issued for an access key.

usage: moto_arn.py MOTO_URL ACCESS_KEY_ID

Reads moto's state dump (/moto-api/data.json, sts.AssumedRole) and prints the ARN of the
assumed-role session whose AccessKeyId is ACCESS_KEY_ID. Exits 1 if moto issued no such key:
then whoever holds it did not get it from this moto's AssumeRoleWithSAML.
"""

import json
import sys
import urllib.request


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: moto_arn.py MOTO_URL ACCESS_KEY_ID")
    url, key = sys.argv[1].rstrip("/"), sys.argv[2]
    with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=30) as answer:
        state = json.load(answer)
    sessions = state.get("sts", {}).get("AssumedRole", [])
    arns = [s["arn"] for s in sessions if s.get("access_key_id") == key]
    if not arns:
        sys.exit(f"moto issued no credentials with that access key ({len(sessions)} sessions known)")
    print(arns[0])


if __name__ == "__main__":
    main()
