"""Write the options of every ``skclusterfit`` sub-command as reStructuredText.

Run by docs/conf.py at each build (and by hand: ``python
docs/scripts/cli_options.py OUT.rst``), so the command-line reference is
generated from the argument parser itself and cannot drift from it.
"""

import argparse
import sys

from skclusterfit.cli import build_parser


def _option_line(action):
    if action.option_strings:
        metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
        if isinstance(action, argparse._VersionAction) or action.nargs == 0:
            names = ", ".join(action.option_strings)
        else:
            suffix = f" {metavar} [{metavar} ...]" if action.nargs == "+" else f" {metavar}"
            names = ", ".join(name + suffix for name in action.option_strings)
    else:
        names = action.metavar or action.dest
    return names


def _describe(action):
    text = (action.help or "").replace("%(prog)s", "skclusterfit").replace("%%", "%")
    extras = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        extras.append("one of " + ", ".join(f"``{c}``" for c in action.choices))
    if action.required and action.option_strings:
        extras.append("required")
    elif (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
          and action.nargs != 0):
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        extras.append(f"default: ``{default}``")
    if extras:
        text = f"{text} ({'; '.join(extras)})" if text else "; ".join(extras)
    return text


def _actions(parser):
    """(group title, actions) in the parser's order, help and sub-commands left out."""
    for group in parser._action_groups:
        actions = [
            a for a in group._group_actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
        ]
        if actions:
            yield group.title, group.description, actions


def render():
    """The reference of every sub-command, as reStructuredText."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = []
    for name, sub in subparsers.choices.items():
        title = f"skclusterfit {name}"
        lines += [title, "-" * len(title), "", sub.description or "", "",
                  ".. code-block:: text", ""]
        usage = sub.format_usage().replace("usage: ", "").strip()
        lines += ["   " + line for line in usage.splitlines()] + [""]
        for group_title, description, actions in _actions(sub):
            heading = {"positional arguments": "Arguments", "options": "Options"}.get(
                group_title, group_title[0].upper() + group_title[1:])
            lines += [f"**{heading}**", ""]
            if description:
                lines += [description, ""]
            for action in actions:
                lines += [f"``{_option_line(action)}``", f"   {_describe(action)}", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as file:
        file.write(render())
