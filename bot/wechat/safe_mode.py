"""Safe mode's envelope (WECHAT.md §1.5): open a pushed message, seal a reply.

The scheme is wechatpy's ``WeChatCrypto`` (AES-256-CBC, the key's first 16 bytes as IV, a
16-byte random prefix, the length in network order, the appid, PKCS#7 to 32 bytes), done with
``cryptography`` directly so that the cipher is built once, not per message. wechatpy builds a
``Cipher`` per call, draws the prefix with a Python loop over ``random.choice`` and parses the
envelope with ElementTree: under bench/peers.py's safe-mode load that was about a tenth of the
serving process's CPU. The tests hold this module to wechatpy's output and WECHAT.md's vector.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from xml.etree import ElementTree
from xml.parsers.expat import ExpatError

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32
# WeChat's envelope as it sends it; anything else is read by ElementTree.
_ENCRYPT = re.compile(rb"<Encrypt><!\[CDATA\[([A-Za-z0-9+/=]*)\]\]></Encrypt>")
_REPLY = (
    "<xml>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n"
    "<MsgSignature><![CDATA[{signature}]]></MsgSignature>\n"
    "<TimeStamp>{timestamp}</TimeStamp>\n<Nonce><![CDATA[{nonce}]]></Nonce>\n</xml>"
)


class EnvelopeError(ValueError):
    """The envelope cannot be opened: ``reason`` says why, for the 400 or 403 reply."""

    def __init__(self, reason: str, *, signature: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signature = signature


def signature(*parts: str) -> str:
    """WeChat's SHA-1 over the sorted, concatenated parts."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def encrypted_part(body: bytes) -> str:
    """The envelope's ``Encrypt`` text (``EnvelopeError`` if there is none)."""
    found = _ENCRYPT.search(body)
    if found is not None:
        text = found.group(1).decode("ascii")
    else:
        try:
            text = ElementTree.fromstring(body).findtext("Encrypt") or ""
        except (ElementTree.ParseError, ExpatError) as exc:
            raise EnvelopeError(f"cannot decrypt ({type(exc).__name__})") from None
    if not text:
        raise EnvelopeError("Encrypt missing")
    return text


class SafeMode:
    """One account's token, key and appid: opens its pushed messages, seals its replies."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        """``encoding_aes_key``: the 43 characters of the 公众号's settings."""
        key = base64.b64decode(encoding_aes_key + "=")
        if len(key) != 32:
            raise ValueError("encoding_aes_key must be 43 characters of base64 (32 bytes)")
        self._token = token
        self._appid = appid.encode()
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def open(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        """The message XML inside the pushed envelope ``body``, once its signature and appid
        are the account's (``EnvelopeError`` otherwise)."""
        encrypt = encrypted_part(body)
        expected = signature(self._token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected, msg_signature):
            raise EnvelopeError("bad msg_signature", signature=True)
        try:
            decryptor = self._cipher.decryptor()
            sealed = base64.b64decode(encrypt, validate=True)
            plain = decryptor.update(sealed) + decryptor.finalize()
            padding = plain[-1]
            content = plain[16:-padding]
            (length,) = struct.unpack(">I", content[:4])
        except (ValueError, IndexError, struct.error, binascii.Error) as exc:
            raise EnvelopeError(f"cannot decrypt ({type(exc).__name__})") from None
        xml, appid = content[4 : 4 + length], content[4 + length :]
        if not 1 <= padding <= BLOCK or len(xml) != length:
            raise EnvelopeError("cannot decrypt (bad padding or length)")
        if appid != self._appid:
            raise EnvelopeError("cannot decrypt (another appid)")
        try:
            return xml.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeError("cannot decrypt (not UTF-8)") from None

    def seal(self, xml: str, nonce: str, timestamp: str, prefix: str | None = None) -> str:
        """The reply envelope of ``xml``. ``prefix``: the 16 random ASCII characters before the
        length (WeChat's own sample draws ASCII too; tests fix them)."""
        body = xml.encode()
        head = (prefix or secrets.token_urlsafe(12)).encode() + struct.pack(">I", len(body))
        raw = head + body + self._appid
        padding = BLOCK - len(raw) % BLOCK
        raw += bytes((padding,)) * padding
        encryptor = self._cipher.encryptor()
        encrypt = base64.b64encode(encryptor.update(raw) + encryptor.finalize()).decode("ascii")
        return _REPLY.format(
            encrypt=encrypt,
            signature=signature(self._token, timestamp, nonce, encrypt),
            timestamp=timestamp,
            nonce=nonce,
        )
