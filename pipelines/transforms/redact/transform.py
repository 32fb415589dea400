"""redact: removes personal data from parsed log documents.

Every string in a JSON document is scanned, however deep:
- email addresses are masked or replaced with a salted hash;
- IP addresses (a whole value, or IPv4 inside text) lose their host bits
  (IPv4 to /24 and IPv6 to /48 by default), which keeps them useful for
  geography and abuse reports;
- secrets in URLs and query strings (`?token=…`, `&api_key=…`) become
  `REDACTED`.

A record that is not a JSON object is dead-lettered with the reason.
"""

import ipaddress
import re

import sluice

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
IPV4_IN_TEXT = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")


class Redact(sluice.Transform):
    def __init__(self, config):
        self.emails = config["emails"]
        if self.emails not in ("mask", "hash", "keep"):
            raise ValueError(f"`emails` must be mask, hash or keep, not {self.emails!r}")
        self.salt = config["salt"].encode("utf-8")
        self.ipv4_prefix = _prefix(config, "ipv4_prefix", 32)
        self.ipv6_prefix = _prefix(config, "ipv6_prefix", 128)
        names = [re.escape(str(name)) for name in config["url_params"]]
        # A parameter at the start of a query string or after ?, & or ;.
        self.secret_param = (
            re.compile(r"(?i)((?:^|[?&;])(?:%s)=)[^&#;\s\"]*" % "|".join(names)) if names else None
        )
        self.keep = {tuple(path.split(".")) for path in config["keep_fields"]}
        self.hashes = {}

    def process(self, record, out):
        document = record.json()
        if not isinstance(document, dict):
            raise sluice.InvalidInput("expected a JSON object (a parsed log document)")
        out.push(self.clean(document, ()))

    def clean(self, value, path):
        if path in self.keep:
            return value
        if isinstance(value, dict):
            return {key: self.clean(item, path + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.clean(item, path) for item in value]
        if isinstance(value, str):
            return self.clean_text(value)
        return value

    def clean_text(self, text):
        whole = self.network_of(text)
        if whole is not None:
            return whole
        if self.secret_param is not None and "=" in text:
            text = self.secret_param.sub(r"\1REDACTED", text)
        if self.emails != "keep" and "@" in text:
            text = EMAIL.sub(self.replace_email, text)
        if self.ipv4_prefix < 32 and "." in text:
            text = IPV4_IN_TEXT.sub(lambda m: self.network_of(m.group(0)) or m.group(0), text)
        return text

    def network_of(self, text):
        """`text` with its host bits zeroed, if it is an IP address."""
        if not (7 <= len(text) <= 45) or not (":" in text or text[0].isdigit()):
            return None
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return None
        prefix = self.ipv4_prefix if address.version == 4 else self.ipv6_prefix
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)

    def replace_email(self, match):
        if self.emails == "mask":
            return "<email>"
        address = match.group(0).lower()
        digest = self.hashes.get(address)
        if digest is None:
            digest = sluice.sha256(self.salt + address.encode("utf-8")).hex()[:16]
            self.hashes[address] = digest
            if len(self.hashes) > 10000:
                self.hashes.clear()
        return f"email:{digest}"


def _prefix(config, key, bits):
    value = config[key]
    if not isinstance(value, int) or not 0 <= value <= bits:
        raise ValueError(f"`{key}` must be between 0 and {bits}, not {value!r}")
    return value


WitWorld = sluice.export(Redact)
