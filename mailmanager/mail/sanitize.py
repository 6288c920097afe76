"""HTML mail made safe to show: no script, no active content, no remote load unless asked.

An HTML body is hostile input. `clean` keeps the markup that lays text out (paragraphs,
tables, lists, fonts, colours) and removes, with nh3 (ammonia's allow-list sanitiser):

- script and everything that can run it: `<script>`, event handlers (`onerror`...),
  `javascript:` and every scheme but http(s), mailto and tel in links, SVG and MathML,
  `<object>`, `<embed>`, `<iframe>`, forms and their fields;
- style sheets (`<style>` elements are dropped with their text) and any `style` attribute
  that could load or run something (`url(`, `expression(`, `image-set(`, `@import`,
  CSS escapes that could spell those);
- relative URLs (they would resolve against the workspace itself);
- remote images: an `<img>` with an http(s) `src` loses it, unless `allow_remote`, and the
  count of those left out is returned so the page can offer "load remote images".
  (A remote image tells the sender when, where and that the mail was read.)

Inline images (`cid:` URLs, RFC 2392) are replaced by the `data:` URLs of the message's
own parts (`parts.inline_images`); a `data:` image written in the HTML stays when it is a
raster image. Links open in a new browsing context, without referrer.

The page that shows the result still serves it with its own Content-Security-Policy
(`default-src 'none'`) inside a sandboxed frame: the sanitiser is one of two locks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import nh3

__all__ = ["SafeHtml", "clean"]

_TAGS = (set(nh3.ALLOWED_TAGS) - {"map", "area"}) | {
    "font", "tfoot", "big", "address", "section", "main", "center",
}  # fmt: skip
_DROPPED_WITH_CONTENT = {
    "script", "style", "title", "noscript", "template", "textarea", "select", "svg", "math",
    "object", "embed", "iframe", "frame", "frameset", "applet", "noembed", "noframes", "xmp",
    "button", "video", "audio", "canvas",
}  # fmt: skip
_COMMON = {"style", "title", "lang", "dir", "align", "valign", "width", "height", "bgcolor"}
_ATTRIBUTES = {
    "*": _COMMON,
    "a": {"href", "name", "hreflang"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "summary"},
    "td": {"colspan", "rowspan", "nowrap", "headers"},
    "th": {"colspan", "rowspan", "nowrap", "headers", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"datetime"},
    "ins": {"datetime"},
    "time": {"datetime"},
    "hr": {"size", "noshade"},
}
# Anything in a style attribute that could fetch or evaluate: url(), IE's expression(),
# image-set(), @import, Mozilla's binding, IE's behavior, and backslash escapes (CSS lets
# `u\72l(` spell url().
_UNSAFE_CSS = re.compile(
    r"url\s*\(|expression|image-set|image\s*\(|@import|binding|behavior|javascript:|\\|/\*",
    re.IGNORECASE,
)
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpe?g|pjpeg|webp|bmp);base64,[A-Za-z0-9+/=\s]*\Z")


@dataclass(frozen=True)
class SafeHtml:
    html: str
    remote_images: int  # remote images left out (0 when they were allowed)


def clean(html: str, inline: Mapping[str, str], allow_remote: bool = False) -> SafeHtml:
    """`html` sanitised (see the module's docstring); `inline` maps a Content-ID to the
    `data:` URL of its image."""
    blocked = 0

    def attribute(tag: str, name: str, value: str) -> str | None:
        nonlocal blocked
        if name == "style":
            return None if _UNSAFE_CSS.search(value) else value
        if name not in ("href", "src", "cite"):
            return value
        url = value.strip()
        lower = url.lower()
        if tag == "img" and name == "src":
            if lower.startswith("cid:"):
                return inline.get(url[4:].strip().strip("<>"))
            if _DATA_IMAGE.match(url):
                return url
            if lower.startswith(("http:", "https:", "//")):
                if allow_remote and not lower.startswith("//"):
                    return url
                blocked += 1
            return None
        if tag == "a" and name == "href":
            return url if lower.startswith(_LINK_SCHEMES) or url.startswith("#") else None
        return url if lower.startswith(("http:", "https:")) else None

    cleaner = nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=attribute,
        strip_comments=True,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes={"http", "https", "mailto", "tel", "data", "cid"},
        url_relative="deny",
    )
    return SafeHtml(cleaner.clean(html), blocked)
