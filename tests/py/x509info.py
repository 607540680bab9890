#!/usr/bin/env python3
"""Independent inspector for the devcert integration tests.

Uses only the Python `cryptography` package plus a tiny raw DER walker (to
get the *exact* bytes of names, SPKI and extension values, without any
re-encoding). Output: one `key=value` line per fact; repeated keys allowed.

Usage:
  x509info.py cert FILE          first certificate in FILE (PEM or DER)
  x509info.py certs FILE         every certificate in FILE (PEM bundle)
  x509info.py csr FILE           certificate signing request
  x509info.py key FILE [PASSFILE] private key (PEM or DER, maybe encrypted)
  x509info.py issued LEAF ISSUER  does ISSUER's key verify LEAF's signature?
  x509info.py serials FILE...     serial of the first cert of each file
"""
import hashlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def out(k, v):
    print(f"{k}={v}")


# ---------- raw DER walking ----------
def tlv(b, i):
    """Return (tag, header_start, content_start, content_end) of the TLV at i."""
    hs = i
    tag = b[i]
    i += 1
    ln = b[i]
    i += 1
    if ln & 0x80:
        n = ln & 0x7F
        ln = int.from_bytes(b[i:i + n], "big")
        i += n
    return tag, hs, i, i + ln


def children(b, start, end):
    res = []
    i = start
    while i < end:
        t = tlv(b, i)
        res.append(t)
        i = t[3]
    return res


def raw(b, t):
    return b[t[1]:t[3]]


def load_certs(path):
    data = open(path, "rb").read()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def load_csr(path):
    data = open(path, "rb").read()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_csr(data)
    return x509.load_der_x509_csr(data)


def key_desc(pub):
    if isinstance(pub, rsa.RSAPublicKey):
        return f"rsa:{pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return f"ec:{pub.curve.name}"
    return type(pub).__name__


def tbs_parts(cert):
    tbs = cert.tbs_certificate_bytes
    top = tlv(tbs, 0)
    kids = children(tbs, top[2], top[3])
    version_present = kids[0][0] == 0xA0
    if version_present:
        kids = kids[1:]
    serial, _sigalg, issuer, _validity, subject, spki = kids[:6]
    exts = [k for k in kids[6:] if k[0] == 0xA3]
    return tbs, serial, issuer, subject, spki, exts


def raw_extensions(tbs, a3):
    """[(oid_der_hex, critical, value_der_bytes)] in certificate order."""
    res = []
    seq = tlv(tbs, a3[2])
    for ext in children(tbs, seq[2], seq[3]):
        parts = children(tbs, ext[2], ext[3])
        critical = False
        if len(parts) == 3:
            critical = tbs[parts[1][2]] != 0
        octet = parts[-1]
        res.append((critical, tbs[octet[2]:octet[3]]))
    return res


def describe_cert(cert, prefix=""):
    tbs, serial, issuer, subject, spki, exts = tbs_parts(cert)
    p = prefix
    out(p + "version", cert.version.name)
    out(p + "subject", cert.subject.rfc4514_string())
    out(p + "issuer", cert.issuer.rfc4514_string())
    out(p + "subject_der", raw(tbs, subject).hex())
    out(p + "issuer_der", raw(tbs, issuer).hex())
    out(p + "subject_crypto_der", cert.subject.public_bytes().hex())
    out(p + "issuer_crypto_der", cert.issuer.public_bytes().hex())
    out(p + "spki_der", raw(tbs, spki).hex())
    out(p + "key", key_desc(cert.public_key()))
    out(p + "serial_int", cert.serial_number)
    out(p + "serial_hex", format(cert.serial_number, "X"))
    out(p + "serial_octets", serial[3] - serial[2])
    out(p + "serial_first_octet", tbs[serial[2]])
    out(p + "not_before", int(cert.not_valid_before_utc.timestamp()))
    out(p + "not_after", int(cert.not_valid_after_utc.timestamp()))
    out(p + "sig_oid", cert.signature_algorithm_oid.dotted_string)
    out(p + "sig_name", cert.signature_algorithm_oid._name)
    out(p + "fingerprint", cert.fingerprint(__import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256()).hex())
    raws = raw_extensions(tbs, exts[0]) if exts else []
    parsed = list(cert.extensions)
    if len(raws) != len(parsed):
        raise SystemExit("extension count mismatch between raw walk and cryptography")
    for (rcrit, rval), e in zip(raws, parsed):
        if rcrit != e.critical:
            raise SystemExit("critical flag mismatch between raw walk and cryptography")
        out(p + "ext", f"{e.oid.dotted_string},{int(e.critical)},{rval.hex()}")
        v = e.value
        if isinstance(v, x509.BasicConstraints):
            out(p + "bc", f"ca={int(v.ca)},pathlen={v.path_length},critical={int(e.critical)}")
        elif isinstance(v, x509.KeyUsage):
            names = ["digital_signature", "content_commitment", "key_encipherment",
                     "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign"]
            flags = [n for n in names if getattr(v, n)]
            if v.key_agreement:
                if v.encipher_only:
                    flags.append("encipher_only")
                if v.decipher_only:
                    flags.append("decipher_only")
            out(p + "ku", ",".join(flags))
            out(p + "ku_critical", int(e.critical))
        elif isinstance(v, x509.ExtendedKeyUsage):
            out(p + "eku", ",".join(o.dotted_string for o in v))
            out(p + "eku_critical", int(e.critical))
        elif isinstance(v, x509.SubjectKeyIdentifier):
            out(p + "ski", v.digest.hex())
            out(p + "ski_method1", x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex())
        elif isinstance(v, x509.AuthorityKeyIdentifier):
            out(p + "aki_keyid", v.key_identifier.hex() if v.key_identifier else "none")
            out(p + "aki_issuer", int(v.authority_cert_issuer is not None))
            out(p + "aki_serial", v.authority_cert_serial_number if v.authority_cert_serial_number is not None else "none")
        elif isinstance(v, x509.SubjectAlternativeName):
            out(p + "san", ",".join(str(g.value) for g in v))


def cmd_cert(path):
    describe_cert(load_certs(path)[0])


def cmd_certs(path):
    certs = load_certs(path)
    out("count", len(certs))
    for i, c in enumerate(certs):
        describe_cert(c, prefix=f"c{i}.")


def cmd_csr(path):
    csr = load_csr(path)
    tbs = csr.tbs_certrequest_bytes
    top = tlv(tbs, 0)
    kids = children(tbs, top[2], top[3])
    _version, subject, spki = kids[:3]
    out("version", tbs[_version[2]])
    out("subject", csr.subject.rfc4514_string())
    out("subject_der", raw(tbs, subject).hex())
    out("subject_crypto_der", csr.subject.public_bytes().hex())
    out("spki_der", raw(tbs, spki).hex())
    out("key", key_desc(csr.public_key()))
    out("sig_valid", int(csr.is_signature_valid))
    out("sig_oid", csr.signature_algorithm_oid.dotted_string)
    for e in csr.extensions:
        out("req_ext", f"{e.oid.dotted_string},{int(e.critical)}")
        if isinstance(e.value, x509.SubjectAlternativeName):
            out("san", ",".join(str(g.value) for g in e.value))


def cmd_key(path, passfile=None):
    data = open(path, "rb").read()
    pw = None
    if passfile:
        pw = open(passfile, "rb").read()
        if pw.endswith(b"\r\n"):
            pw = pw[:-2]
        elif pw.endswith(b"\n"):
            pw = pw[:-1]
    if b"-----BEGIN" in data:
        k = serialization.load_pem_private_key(data, password=pw)
    else:
        k = serialization.load_der_private_key(data, password=pw)
    pub = k.public_key()
    out("key", key_desc(pub))
    out("spki_der", pub.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).hex())
    if isinstance(k, rsa.RSAPrivateKey):
        secret = k.private_numbers().d
    else:
        secret = k.private_numbers().private_value
    out("secret_sha256", hashlib.sha256(str(secret).encode()).hexdigest())


def cmd_issued(leaf, issuer):
    l = load_certs(leaf)[0]
    i = load_certs(issuer)[0]
    try:
        l.verify_directly_issued_by(i)
        out("issued", 1)
    except Exception as e:  # noqa: BLE001
        out("issued", 0)
        out("reason", repr(e).replace("\n", " "))


def cmd_serials(paths):
    for p in paths:
        c = load_certs(p)[0]
        tbs, serial, *_ = tbs_parts(c)
        out("serial", f"{format(c.serial_number, 'X')},{serial[3] - serial[2]},{tbs[serial[2]]},{int(c.serial_number > 0)}")


def run_multi(argv):
    """`multi CMD ARGS... -- CMD ARGS... --`: several queries in one process
    (python start-up is the slow part). Each answer starts with `#N`; a query
    that fails prints `#N!error=...` instead of aborting the others."""
    queries, cur = [], []
    for a in argv:
        if a == "--":
            queries.append(cur)
            cur = []
        else:
            cur.append(a)
    if cur:
        queries.append(cur)
    for i, q in enumerate(queries):
        print(f"#{i}")
        try:
            dispatch(q[0], q[1:])
        except BaseException as e:  # noqa: BLE001
            print(f"#{i}!error={e!r}".replace("\n", " "))
        sys.stdout.flush()


def main():
    if sys.argv[1] == "multi":
        run_multi(sys.argv[2:])
        return
    dispatch(sys.argv[1], sys.argv[2:])


def dispatch(cmd, args):
    if cmd == "cert":
        cmd_cert(*args)
    elif cmd == "certs":
        cmd_certs(*args)
    elif cmd == "csr":
        cmd_csr(*args)
    elif cmd == "key":
        cmd_key(*args)
    elif cmd == "issued":
        cmd_issued(*args)
    elif cmd == "serials":
        cmd_serials(args)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
