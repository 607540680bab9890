#!/usr/bin/env python3
"""Odd certificate material for the `devcert inspect` tests, made with the
Python `cryptography` package (independent of devcert and OpenSSL's CLI).

Usage:
  inspect_fixtures.py sans N OUT        self-signed cert with N DNS SANs
  inspect_fixtures.py expired OUT       valid from 40 days ago to 10 days ago
  inspect_fixtures.py notyet OUT        valid from 5 days from now
  inspect_fixtures.py unknown OUT       unknown critical + non-critical extensions
  inspect_fixtures.py crl OUT           CRL: keyCompromise, certificateHold with
                                        invalidityDate, an entry without reason
  inspect_fixtures.py secrets KEY [PASS] hex of every private number of KEY,
                                        one a line (to assert none is printed)
"""
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def self_signed(cn, not_before, not_after, extensions=()):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for ext, critical in extensions:
        b = b.add_extension(ext, critical)
    return b.sign(key, hashes.SHA256())


def write(path, obj):
    with open(path, "wb") as f:
        f.write(obj.public_bytes(serialization.Encoding.PEM))


def crl(out):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name("Python CRL CA"))
        .last_update(NOW - DAY)
        .next_update(NOW + 7 * DAY)
        .add_extension(x509.CRLNumber(42), False)
    )
    entries = [
        (0x1001, [x509.CRLReason(x509.ReasonFlags.key_compromise)]),
        (0x1002, [x509.CRLReason(x509.ReasonFlags.certificate_hold),
                  x509.InvalidityDate(datetime.datetime(2020, 1, 2, 3, 4, 5))]),
        (0x1003, []),
    ]
    for serial, exts in entries:
        r = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - DAY)
        for e in exts:
            r = r.add_extension(e, False)
        b = b.add_revoked_certificate(r.build())
    write(out, b.sign(key, hashes.SHA256()))


def secrets(path, password):
    data = open(path, "rb").read()
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    key = loader(data, password)
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        values = [n.d, n.p, n.q, n.dmp1, n.dmq1, n.iqmp]
    else:
        values = [key.private_numbers().private_value]
    for v in values:
        print(format(v, "x"))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sans":
        n, out = int(args[0]), args[1]
        sans = x509.SubjectAlternativeName(
            [x509.DNSName(f"d{i}.example") for i in range(n)])
        write(out, self_signed("many sans", NOW - DAY, NOW + 30 * DAY, [(sans, False)]))
    elif cmd == "expired":
        write(args[0], self_signed("expired", NOW - 40 * DAY, NOW - 10 * DAY))
    elif cmd == "notyet":
        write(args[0], self_signed("not yet", NOW + 5 * DAY, NOW + 50 * DAY))
    elif cmd == "unknown":
        exts = [
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                        b"\x04\x03abc"), True),
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.2"),
                                        b"\xff\x00garbage"), False),
        ]
        write(args[0], self_signed("unknown exts", NOW - DAY, NOW + DAY, exts))
    elif cmd == "crl":
        crl(args[0])
    elif cmd == "secrets":
        password = args[1].encode() if len(args) > 1 else None
        secrets(args[0], password)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
