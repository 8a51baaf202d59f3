"""The Operations page and its static assets, shipped inside the package (no CDN).

Assets are read once, when the app is built. Each is served under ``/ui/static/<name>`` with an
ETag (a hash of its bytes); the page links them as ``static/<name>?v=<hash>``, and a request
carrying the current hash may be cached for a year (``immutable``): a new release changes the
hash and so the URL. Any other request revalidates (``no-cache``) and gets 304 when unchanged.
The page itself is never cached (it names the current hashes) and carries a Content Security
Policy that allows scripts, styles and requests from this origin only, so no inline script,
injected or not, runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

ASSETS = {
    "ops.js": "text/javascript; charset=utf-8",
    "ops.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
PAGE = "index.html"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def load_assets() -> tuple[bytes, dict[str, Asset]]:
    """The page (with its asset links versioned) and the assets, from the package."""
    folder = resources.files("etlops_airflow.plugins") / "static"
    assets = {}
    for name, media_type in ASSETS.items():
        body = (folder / name).read_bytes()
        assets[name] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])
    page = (folder / PAGE).read_text(encoding="utf-8")
    for name, asset in assets.items():
        page = page.replace(f'"static/{name}"', f'"static/{name}?v={asset.version}"')
    return page.encode("utf-8"), assets
