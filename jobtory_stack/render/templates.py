"""The one way the stack renders its templates: Jinja2 files in jobtory_stack/templates/.

They live inside the package so the wheel and every host release carry them. Config files,
not HTML: no autoescape. A missing value is an error (StrictUndefined), never an empty
string in a Caddyfile or a unit. trim_blocks/lstrip_blocks let a line that holds only a
`{% tag %}` vanish from the output, so tags can be indented like the file around them.
The host deploy (pyinfra/tasks/services.py) renders the systemd units through here too.
"""

from __future__ import annotations

import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = shlex.quote  # shell scripts: every value quoted where used
    return env


def render_template(name: str, **values: Any) -> str:
    """Template `name` (a path under jobtory_stack/templates/) rendered with `values`."""
    return environment().get_template(name).render(**values)
