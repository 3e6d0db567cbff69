"""Error pages the proxy writes itself: built-in HTML, or `NNN.html` templates from a directory.

Custom pages follow kamal-proxy's `--error-pages DIR` contract: each `<status>.html` is a Go
`html/template`; we support the part of that language error pages use: `{{ .Message }}` (HTML
escaped) and `{{ if .Message }}...{{ else }}...{{ end }}`. A status without a template falls back
to the built-in page, or to `<h1>CODE Text</h1>`.
"""

from __future__ import annotations

import html
import logging
import re
from http import HTTPStatus
from pathlib import Path
from typing import Final

log = logging.getLogger("dockyard.proxy")

_TITLES: Final[dict[int, str]] = {
    404: "Not Found",
    413: "Request Too Large",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Timeout",
}
_TEXTS: Final[dict[int, str]] = {
    404: "There is nothing at this address.",
    413: "The request is larger than this service accepts.",
    502: "The application could not be reached.",
    503: "The service is temporarily unavailable. Please try again in a moment.",
    504: "The application took too long to respond.",
}

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{code} {title}</title>
<style>
body {{ margin: 0; min-height: 100vh; display: grid; place-items: center;
  font-family: system-ui, sans-serif; background: #1f2a37; color: #f4f6f8; }}
main {{ max-width: 34em; padding: 2em; text-align: center; }}
h1 {{ font-size: 3em; margin: 0 0 .3em; }}
</style>
</head>
<body>
<main>
<h1>{code}</h1>
<p>{body}</p>
</main>
</body>
</html>
"""

_IF = re.compile(
    r"\{\{-?\s*if\s+\.Message\s*-?\}\}(.*?)(?:\{\{-?\s*else\s*-?\}\}(.*?))?\{\{-?\s*end\s*-?\}\}",
    re.S,
)
_MESSAGE = re.compile(r"\{\{-?\s*\.Message\s*-?\}\}")
_ACTION = re.compile(r"\{\{.*?\}\}", re.S)


def render_template(text: str, message: str) -> str:
    """Render the supported subset of a Go html/template with `.Message`."""
    text = _IF.sub(lambda m: m.group(1) if message else (m.group(2) or ""), text)
    text = _MESSAGE.sub(lambda _m: html.escape(message), text)
    return _ACTION.sub("", text)


def builtin_page(status: int, message: str = "") -> bytes | None:
    title = _TITLES.get(status)
    if title is None:
        return None
    body = html.escape(message) if (status == 503 and message) else _TEXTS[status]
    return _PAGE.format(code=status, title=title, body=body).encode()


def plain_h1(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"<h1>{status} {phrase}</h1>".encode()


class ErrorPages:
    """Loads and caches template directories; renders pages."""

    __slots__ = ("_dirs",)

    def __init__(self) -> None:
        self._dirs: dict[Path, tuple[float, dict[int, str]]] = {}

    def _templates(self, directory: Path) -> dict[int, str]:
        try:
            mtime = directory.stat().st_mtime
        except OSError:
            return {}
        cached = self._dirs.get(directory)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        pages: dict[int, str] = {}
        try:
            for path in directory.glob("*.html"):
                if path.stem.isdigit():
                    pages[int(path.stem)] = path.read_text("utf-8", "replace")
        except OSError as exc:
            log.error("Failed to load error pages from %s: %s", directory, exc)
        self._dirs[directory] = (mtime, pages)
        return pages

    def custom(self, status: int, directory: Path | None, message: str = "") -> bytes | None:
        if directory is None:
            return None
        template = self._templates(directory).get(status)
        if template is None:
            return None
        return render_template(template, message).encode()

    def render(self, status: int, directory: Path | None, message: str = "") -> bytes:
        """The HTML body for a proxy-generated `status`."""
        page = self.custom(status, directory, message)
        if page is not None:
            return page
        return builtin_page(status, message) or plain_h1(status)
