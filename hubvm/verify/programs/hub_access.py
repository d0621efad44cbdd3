"""Who may log in, and HTTPS, as the guest has them: its access settings (the hub role's hub-access.json, the first
argument), each admin's entry in FirstUseAuthenticator's store (read-only; "bcrypt", "other" or "none", never the
hash), and the fingerprint and PEM of the certificate its proxy serves. Admin names follow. One @@hubvm-item line."""

import base64
import dbm
import hashlib
import json
import sys


def item(out: dict) -> None:
    print("@@hubvm-item " + json.dumps(out))


try:
    with open(sys.argv[1]) as file:
        access = json.load(file)
except (OSError, ValueError) as error:
    item({"error": f"cannot read {sys.argv[1]}: {error}"})
    sys.exit(0)
out = {key: access.get(key) for key in ("https", "https_port", "http_port", "signup", "tls_cert", "password_db")}
try:
    with dbm.open(access["password_db"], "r") as db:
        stored = {name: db.get(name.encode()) for name in sys.argv[2:]}
    out["admins"] = {name: ("bcrypt" if value and value.startswith(b"$2") else "other" if value else "none")
                     for name, value in stored.items()}
except Exception as error:
    out["admins_error"] = f"cannot read the password store {access.get('password_db')}: {error}"
if access.get("tls_cert"):
    try:
        with open(access["tls_cert"]) as file:
            text = file.read()
        body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        der = base64.b64decode("".join(body.split()))
        out["cert_sha256"] = hashlib.sha256(der).hexdigest()
        out["cert_pem"] = "-----BEGIN CERTIFICATE-----" + body + "-----END CERTIFICATE-----\n"
    except (OSError, IndexError, ValueError) as error:
        out["cert_error"] = f"cannot read {access['tls_cert']}: {error}"
item(out)
