#!/usr/bin/env python3
"""GetCallerIdentity through boto3, with a profile whose credentials come from credential_process.

usage: boto3_identity.py PROFILE ENDPOINT_URL
       boto3_identity.py PROFILE ENDPOINT_URL --expect-error TEXT

The first form prints "ARN ACCESS_KEY_ID": the caller's ARN as STS reports it and the access key
boto3 signed with. The second succeeds only if boto3 cannot get credentials and its error
contains TEXT; it prints the error. The credentials never leave this process otherwise.
"""

import sys

import boto3
import botocore.exceptions


def main() -> None:
    args = sys.argv[1:]
    expect = None
    if len(args) == 4 and args[2] == "--expect-error":
        expect = args[3]
        args = args[:2]
    if len(args) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    profile, endpoint = args

    session = boto3.Session(profile_name=profile)
    try:
        # botocore runs the credential_process here, when the client is created.
        sts = session.client("sts", endpoint_url=endpoint)
        arn = sts.get_caller_identity()["Arn"]
    except botocore.exceptions.CredentialRetrievalError as e:
        if expect is not None and expect in str(e):
            print(f"{type(e).__name__}: {e}")
            return
        sys.exit(f"boto3 could not get credentials: {type(e).__name__}: {e}")
    if expect is not None:
        sys.exit(f"boto3 got credentials ({arn}) where an error with {expect!r} was expected")
    print(arn, session.get_credentials().access_key)


if __name__ == "__main__":
    main()
