"""``.. shown-only:: reason``: a code block that the documentation tests do not run.

``tests/test_docs.py`` executes every Python code block of the guide; a block
that cannot run on a small CPU machine without network (it needs a GPU,
downloaded weights, your image folder, hours of compute) is preceded by this
directive, which tells the test to skip it and tells the reader why::

    .. shown-only:: needs a ResNet-50 weights file and a GPU.

    .. code-block:: python

       ...
"""

from docutils import nodes
from docutils.parsers.rst import Directive


class ShownOnly(Directive):
    required_arguments = 1
    final_argument_whitespace = True
    has_content = False

    def run(self):
        # The reason may hold inline markup (``code``, :ref:`...`).
        reason, messages = self.state.inline_text(self.arguments[0].strip(), self.lineno)
        emphasis = nodes.emphasis()
        emphasis += nodes.Text("Not run by the documentation tests: ")
        emphasis.extend(reason)
        paragraph = nodes.paragraph(classes=["shown-only"])
        paragraph += emphasis
        return [paragraph, *messages]


def setup(app):
    app.add_directive("shown-only", ShownOnly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
