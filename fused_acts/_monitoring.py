"""Where the fused calls meet a monitor (_monitor.py): while a monitored
site's forward runs, `site` is it, and each fused forward goes to
site.call(op name, args) instead, which runs the op's monitored twin. The
forwards check `site is None` first, which is all a call outside a monitor
costs."""

site = None
