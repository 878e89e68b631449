"""Secrets never reach a log, tag, param, artifact or message.

A value is secret when its key names a token, password, secret, credential or key
(`api_token`, `mlflow.password`, `private_key`), at any depth and whether or not
the config knows the key; credentials inside a URI (`http://user:pw@host`) are
secret too, as are query parameters naming a secret (`?password=`). PipelineError masks its own
message and `pipeline.errors.exit_with_message` what it prints, so no message needs to; Hydra's
`--cfg` print is masked as it is written (pipeline.hydra_ext.show). Hydra writes its config
copies before any pipeline code runs, so those files are scrubbed in place as the job starts.
"""

from __future__ import annotations

import re
from pathlib import Path

MASK = "***"
# Inside a key part (hf_token, MLFLOW_TRACKING_PASSWORD) these always mean a secret ...
_SECRET_FRAGMENTS = ("token", "password", "passwd", "secret", "credential", "apikey", "passphrase")
# ... and these only as a whole word of it (api_key, key), not inside one (monkey).
_SECRET_WORDS = {"key", "pwd", "pw"}
# scheme://user:password@ -> scheme://user:***@
_URI_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^/\s:@'\"]+):(?P<pw>[^/\s@'\"]+)@")
# ?password=... / &access_token=... in a URI's query string: the key, then its value.
_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<key>[\w.\-]+)=)(?P<value>[^&;#\s'\"]+)")
# key=value inside text (overrides, Hydra's override_dirname): value up to a delimiter.
_ASSIGNMENT = re.compile(r"(?P<key>[\w.\-]+)=(?P<value>[^,\s\]'\"]+)")
# A YAML mapping line: indentation, optional list dash, key, colon, rest.
_YAML_LINE = re.compile(r"^(?P<indent>\s*(?:-\s+)?)(?P<key>[\w.\-]+):(?P<rest>.*)$")


def is_secret(key: str) -> bool:
    """Whether any dotted part of `key` names a secret (`api_token`, `db.password`, `key`)."""
    for part in key.lstrip("+~").lower().split("."):
        if any(fragment in part for fragment in _SECRET_FRAGMENTS):
            return True
        if _SECRET_WORDS & set(re.split(r"[_\-]", part)):
            return True
    return False


def uri(text: str) -> str:
    """`text` with the password of every URI in it masked: user:password@, and query parameters
    that name a secret (postgresql://host/db?password=..., sqlite:///x.db?token=...)."""
    masked = _URI_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _QUERY_PARAMETER.sub(lambda m: f"{m['head']}{MASK}" if is_secret(m["key"]) else m[0], masked)


def value(key: str, val: object) -> object:
    """`val` as it may be shown: masked under a secret key, URI credentials masked in any string."""
    if is_secret(key):
        return MASK
    return uri(val) if isinstance(val, str) else val


def text(line: str) -> str:
    """Free text (an override, a command line, an error): secret assignments and URI passwords masked."""
    masked = _ASSIGNMENT.sub(lambda m: f"{m['key']}={MASK}" if is_secret(m["key"]) else m[0], line)
    return uri(masked)


def yaml_text(content: str) -> str:
    """A YAML document with the values of secret keys (and everything nested under them) masked."""
    out, hidden_below = [], None
    for line in content.splitlines():
        indent = len(line) - len(line.lstrip())
        if hidden_below is not None and line.strip() and indent > hidden_below:
            continue  # nested under a secret key
        hidden_below = None
        match = _YAML_LINE.match(line)
        if match and is_secret(match["key"]):
            if match["rest"].strip():
                line = f"{match['indent']}{match['key']}: '{MASK}'"
            else:
                hidden_below = indent
                line = f"{match['indent']}{match['key']}: '{MASK}'"
        out.append(text(line))
    return "\n".join(out) + ("\n" if content.endswith("\n") else "")


def scrub_yaml_files(folder: Path) -> None:
    """Rewrite every YAML file in `folder` (Hydra's .hydra/ copies, multirun.yaml) with secrets masked."""
    for path in sorted(folder.glob("*.yaml")):
        content = path.read_text()
        clean = yaml_text(content)
        if clean != content:
            path.write_text(clean)
