"""An independent implementation of the providers' notification cryptography,
for tests/api/channels_interop.rs: Python's `cryptography` (OpenSSL) instead
of the RustCrypto crates flashguard uses, and the signed strings built here
from the providers' rules, not by flashguard's code.

    verify-alipay PUBLIC_PEM FORM_FILE
    sign-alipay PRIVATE_PEM name=value ...          -> the signed form on stdout
    verify-wechatpay PUBLIC_PEM APIV3_KEY TIMESTAMP NONCE SIGNATURE BODY_FILE
                                                    -> the decrypted transaction
    sign-wechatpay PRIVATE_PEM APIV3_KEY TRANSACTION_JSON
                                                    -> {"body","timestamp","nonce","signature"}

Exits 1 with a message when a signature does not verify.
"""
import base64
import json
import secrets
import sys
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def load_public(path):
    with open(path, "rb") as file:
        return serialization.load_pem_public_key(file.read())


def load_private(path):
    with open(path, "rb") as file:
        return serialization.load_pem_private_key(file.read(), password=None)


class Refused(Exception):
    """The input is not what the provider sends."""


def alipay_signed_string(params):
    """Alipay's rule: every non-empty parameter but sign and sign_type, sorted by name."""
    return "&".join(
        f"{name}={value}"
        for name, value in sorted(params.items())
        if name not in ("sign", "sign_type") and value != ""
    )


def verify_alipay(public_pem, form_file):
    with open(form_file, encoding="utf-8") as file:
        params = dict(urllib.parse.parse_qsl(file.read(), keep_blank_values=True))
    if params.get("sign_type") != "RSA2":
        raise Refused(f"sign_type is {params.get('sign_type')!r}, not RSA2")
    signature = base64.b64decode(params["sign"])
    load_public(public_pem).verify(
        signature, alipay_signed_string(params).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
    )
    print("verified", params["out_trade_no"])


def sign_alipay(private_pem, pairs):
    params = dict(pair.split("=", 1) for pair in pairs)
    signed = alipay_signed_string(params).encode("utf-8")
    signature = load_private(private_pem).sign(signed, padding.PKCS1v15(), hashes.SHA256())
    params["sign_type"] = "RSA2"
    params["sign"] = base64.b64encode(signature).decode()
    print(urllib.parse.urlencode(params), end="")


def wechatpay_message(timestamp, nonce, body):
    return f"{timestamp}\n{nonce}\n{body}\n".encode("utf-8")


def verify_wechatpay(public_pem, apiv3_key, timestamp, nonce, signature, body_file):
    with open(body_file, encoding="utf-8") as file:
        body = file.read()
    load_public(public_pem).verify(
        base64.b64decode(signature), wechatpay_message(timestamp, nonce, body), padding.PKCS1v15(), hashes.SHA256()
    )
    resource = json.loads(body)["resource"]
    if resource["algorithm"] != "AEAD_AES_256_GCM":
        raise Refused(f"algorithm is {resource['algorithm']!r}, not AEAD_AES_256_GCM")
    plain = AESGCM(apiv3_key.encode()).decrypt(
        resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]), resource["associated_data"].encode()
    )
    print(plain.decode("utf-8"), end="")


def sign_wechatpay(private_pem, apiv3_key, transaction_json):
    nonce = secrets.token_hex(6)  # 12 characters
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), transaction_json.encode(), b"transaction")
    body = json.dumps(
        {
            "id": "EV-python-" + secrets.token_hex(8),
            "create_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600)),
            "event_type": "TRANSACTION.SUCCESS",
            "resource_type": "encrypt-resource",
            "summary": "支付成功",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "nonce": nonce,
                "associated_data": "transaction",
                "original_type": "transaction",
            },
        },
        ensure_ascii=False,
    )
    timestamp, header_nonce = str(int(time.time())), secrets.token_hex(16)
    signature = load_private(private_pem).sign(
        wechatpay_message(timestamp, header_nonce, body), padding.PKCS1v15(), hashes.SHA256()
    )
    print(json.dumps({"body": body, "timestamp": timestamp, "nonce": header_nonce,
                      "signature": base64.b64encode(signature).decode()}), end="")


def main(argv):
    command, args = argv[1], argv[2:]
    try:
        {
            "verify-alipay": lambda: verify_alipay(*args),
            "sign-alipay": lambda: sign_alipay(args[0], args[1:]),
            "verify-wechatpay": lambda: verify_wechatpay(*args),
            "sign-wechatpay": lambda: sign_wechatpay(*args),
        }[command]()
    except InvalidSignature:
        print("signature does not verify", file=sys.stderr)
        return 1
    except Refused as refused:
        print(refused, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
