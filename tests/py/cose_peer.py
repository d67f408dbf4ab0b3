#!/usr/bin/env python3
"""An independent COSE peer for secllama's interop tests: pycose + cryptography + cbor2.

Nothing here imports secllama code. Each subcommand either checks an object secllama produced or
produces one for secllama to check, rebuilding the secllama-specific parts (external AAD, HKDF,
nonces) from DESIGN.md on its own. Prints JSON on success; exits 1 with a message on failure.
"""
import argparse
import json
import os
import sys

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pycose import headers
from pycose.algorithms import A256GCM, Direct, RsaesOaepSha256
from pycose.keys import EC2Key, RSAKey, SymmetricKey
from pycose.keys.curves import P256
from pycose.keys.keyops import DecryptOp, EncryptOp, UnwrapOp, VerifyOp, WrapOp
from pycose.messages import CoseMessage, EncMessage
from pycose.messages.recipient import DirectEncryption, KeyWrap


def request_aad(method, path, doc_digest_hex):
    return cbor2.dumps(["secllama/v1/request", method, path, bytes.fromhex(doc_digest_hex)])


def int_bytes(i):
    return i.to_bytes((i.bit_length() + 7) // 8, "big")


def rsa_private(path):
    sk = serialization.load_der_private_key(open(path, "rb").read(), password=None)
    n = sk.private_numbers()
    pub = n.public_numbers
    return RSAKey(n=int_bytes(pub.n), e=int_bytes(pub.e), d=int_bytes(n.d), p=int_bytes(n.p), q=int_bytes(n.q),
                  dp=int_bytes(n.dmp1), dq=int_bytes(n.dmq1), qinv=int_bytes(n.iqmp),
                  optional_params={"KEY_OPS": [UnwrapOp, DecryptOp]})


def plaintext_json(pt):
    m = cbor2.loads(pt)
    if set(m) != {"id", "ts", "salt", "body"}:
        raise SystemExit(f"plaintext keys {sorted(m)} are not id, ts, salt, body")
    return {"id": m["id"].hex(), "ts": m["ts"], "salt": m["salt"].hex(), "body": m["body"].hex()}


def cmd_verify_sign1(a):
    msg = CoseMessage.decode(bytes.fromhex(open(a.input).read().strip()) if a.hex else open(a.input, "rb").read())
    msg.key = EC2Key(crv=P256, x=bytes.fromhex(a.x), y=bytes.fromhex(a.y), optional_params={"KEY_OPS": [VerifyOp]})
    if a.aad:
        msg.external_aad = bytes.fromhex(a.aad)
    if not msg.verify_signature():
        raise SystemExit("pycose: signature does not verify")
    alg = msg.get_attr(headers.Algorithm)
    return {"valid": True, "alg": alg.fullname, "payload": msg.payload.hex(),
            "content_type": msg.get_attr(headers.ContentType), "kid": (msg.get_attr(headers.KID) or b"").hex()}


def cmd_open_request(a):
    msg = CoseMessage.decode(open(a.input, "rb").read())
    if not isinstance(msg, EncMessage):
        raise SystemExit(f"expected COSE_Encrypt, got {type(msg).__name__}")
    msg.external_aad = request_aad(a.method, a.path, a.doc_digest)
    rec = msg.recipients[0]
    if a.pkcs8:
        if rec.get_attr(headers.Algorithm) is not RsaesOaepSha256:
            raise SystemExit("recipient alg is not RSAES-OAEP w/ SHA-256")
        rec.key = rsa_private(a.pkcs8)
        pt = msg.decrypt(rec)
        cek = rec.compute_cek(A256GCM, "decrypt").k
    else:
        if rec.get_attr(headers.Algorithm) is not Direct:
            raise SystemExit("recipient alg is not direct")
        cek = bytes.fromhex(a.content_key)
        msg.key = SymmetricKey(k=cek, optional_params={"KEY_OPS": [DecryptOp]})
        pt = msg.decrypt(rec)
    out = plaintext_json(pt)
    out["content_key"] = cek.hex()
    out["kid"] = rec.get_attr(headers.KID).hex()
    return out


def response_keys(content_key_hex, request_id_hex):
    okm = HKDF(algorithm=hashes.SHA256(), length=44, salt=bytes.fromhex(request_id_hex),
               info=b"secllama/v1/response").derive(bytes.fromhex(content_key_hex))
    return okm[:32], okm[32:]


def open_encrypt0(raw, key, base_iv, counter, aad):
    msg = CoseMessage.decode(raw)
    piv = msg.get_attr(headers.PartialIV)
    if int.from_bytes(piv, "big") != counter:
        raise SystemExit(f"chunk counter {int.from_bytes(piv, 'big')} where {counter} was expected")
    nonce = (int.from_bytes(base_iv, "big") ^ counter).to_bytes(12, "big")
    msg.uhdr_update({headers.IV: nonce})  # not authenticated: only tells pycose the nonce
    msg.key = SymmetricKey(k=key, optional_params={"KEY_OPS": [DecryptOp]})
    msg.external_aad = aad
    data = msg.decrypt()
    final = msg.phdr.get("final")
    if not isinstance(final, bool):
        raise SystemExit("protected header lacks the boolean 'final'")
    return data, final


def cmd_open_response(a):
    key, base_iv = response_keys(a.content_key, a.request_id)
    mode = "stream" if a.stream else "single"
    aad = cbor2.dumps(["secllama/v1/response", bytes.fromhex(a.request_id), mode])
    raw = open(a.input, "rb").read()
    if not a.stream:
        data, final = open_encrypt0(raw, key, base_iv, 0, aad)
        if not final:
            raise SystemExit("single answer not marked final")
        return {"chunks": [data.hex()]}
    chunks, pos, counter, final = [], 0, 0, False
    while pos < len(raw):
        if final:
            raise SystemExit("data after the final chunk")
        n = int.from_bytes(raw[pos:pos + 4], "big")
        data, final = open_encrypt0(raw[pos + 4:pos + 4 + n], key, base_iv, counter, aad)
        chunks.append(data.hex())
        pos, counter = pos + 4 + n, counter + 1
    if not final:
        raise SystemExit("stream ended without a final chunk")
    return {"chunks": chunks}


def cmd_make_request(a):
    spki = open(a.spki, "rb").read()
    pub = serialization.load_der_public_key(spki).public_numbers()
    kek = RSAKey(n=int_bytes(pub.n), e=int_bytes(pub.e), optional_params={"KEY_OPS": [WrapOp, EncryptOp]})
    cek = os.urandom(32)
    kid = hashes.Hash(hashes.SHA256())
    kid.update(spki)
    rec = KeyWrap(uhdr={headers.Algorithm: RsaesOaepSha256, headers.KID: kid.finalize()}, payload=cek, key=kek)
    pt = cbor2.dumps({"id": bytes.fromhex(a.request_id), "ts": a.ts, "salt": bytes.fromhex(a.salt),
                      "body": bytes.fromhex(a.body)}, canonical=True)
    msg = EncMessage(phdr={headers.Algorithm: A256GCM}, uhdr={headers.IV: os.urandom(12)}, payload=pt,
                     recipients=[rec], external_aad=request_aad(a.method, a.path, a.doc_digest))
    open(a.out, "wb").write(msg.encode(tag=True))
    return {"content_key": cek.hex()}


def cmd_gen_rsa(a):
    sk = rsa.generate_private_key(public_exponent=65537, key_size=a.bits)
    open(a.out, "wb").write(sk.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return {"bits": a.bits}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("verify-sign1")
    s.add_argument("--x", required=True)
    s.add_argument("--y", required=True)
    s.add_argument("--in", dest="input", required=True)
    s.add_argument("--aad")
    s.add_argument("--hex", action="store_true")
    for name in ("open-request",):
        s = sub.add_parser(name)
        s.add_argument("--in", dest="input", required=True)
        s.add_argument("--pkcs8")
        s.add_argument("--content-key")
        s.add_argument("--method", required=True)
        s.add_argument("--path", required=True)
        s.add_argument("--doc-digest", required=True)
    s = sub.add_parser("open-response")
    s.add_argument("--in", dest="input", required=True)
    s.add_argument("--content-key", required=True)
    s.add_argument("--request-id", required=True)
    s.add_argument("--stream", action="store_true")
    s = sub.add_parser("make-request")
    for arg in ("--spki", "--out", "--method", "--path", "--doc-digest", "--request-id", "--salt", "--body"):
        s.add_argument(arg, required=True)
    s.add_argument("--ts", type=int, required=True)
    s = sub.add_parser("gen-rsa")
    s.add_argument("--out", required=True)
    s.add_argument("--bits", type=int, default=3072)
    a = p.parse_args()
    handler = {"verify-sign1": cmd_verify_sign1, "open-request": cmd_open_request,
               "open-response": cmd_open_response, "make-request": cmd_make_request, "gen-rsa": cmd_gen_rsa}
    try:
        print(json.dumps(handler[a.cmd](a)))
    except SystemExit:
        raise
    except Exception as e:  # any pycose or cryptography failure is a failed check
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
