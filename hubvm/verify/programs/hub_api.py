"""GET the hub's API inside the guest: its status and body, or why nothing answered. On loopback the certificate
is not checked (verify checks it from the host). Arguments: URL, seconds. One @@hubvm-item JSON line."""

import json
import ssl
import sys
import urllib.error
import urllib.request

loopback = ssl.create_default_context()
loopback.check_hostname, loopback.verify_mode = False, ssl.CERT_NONE
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=loopback))
try:
    with opener.open(sys.argv[1], timeout=float(sys.argv[2])) as answer:
        body = answer.read(4000).decode("utf-8", "replace")
        print("@@hubvm-item " + json.dumps({"status": answer.status, "body": body}))
except urllib.error.HTTPError as error:
    print("@@hubvm-item " + json.dumps({"status": error.code, "body": ""}))
except Exception as error:
    reason = getattr(error, "reason", error)
    print("@@hubvm-item " + json.dumps({"error": "no answer: " + (getattr(reason, "strerror", None) or str(reason))}))
