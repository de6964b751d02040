"""Drop repeated <script> entries from each page.

sphinx-thebe 0.3.1 under Sphinx 7.4 adds its inline configuration script twice, and the
second copy throws "Identifier 'THEBE_JS_URL' has already been declared" in the browser.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # Inline scripts come with filename None or "": compare them by their body.
        filename = getattr(script, "filename", script) or ""
        key = (str(filename), repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
