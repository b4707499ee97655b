"""The dashboard's pages as templates, in Material's markup (header, tabs, typeset content,
its tables and buttons) so that the catalog's stylesheets give them the catalog's look.
Jinja escapes every value; only the charts (SVG that formarket draws) and the logo are
trusted as markup."""

from __future__ import annotations

from decimal import Decimal

from jinja2 import DictLoader, Environment

from formarket.control.look import PALETTE

__all__ = ["render"]

_TABLE_OPEN = '<div class="md-typeset__scrollwrap"><div class="md-typeset__table"><table>'
_TABLE_CLOSE = "</table></div></div>"

_BASE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - formarket</title>
{% for sheet in stylesheets %}<link rel="stylesheet" href="/dashboard/assets/{{ sheet }}">
{% endfor %}<style>
.fm-dash-who{margin-left:auto;display:flex;gap:.6rem;align-items:center;font-size:.7rem}
.fm-dash-who button{font:inherit;color:inherit;background:none;cursor:pointer;
 border:1px solid currentColor;border-radius:.1rem;padding:.1rem .5rem}
.md-typeset .fm-new-key{background:var(--md-accent-fg-color--transparent);padding:.6rem .8rem}
.md-typeset form.fm-inline{display:inline}
.md-typeset .fm-form{display:flex;flex-wrap:wrap;gap:.8rem;align-items:end}
.md-typeset .fm-form label{display:flex;flex-direction:column;font-size:.7rem}
.md-typeset .fm-form input{font:inherit;font-size:.8rem;padding:.3rem .5rem;
 border:1px solid var(--md-default-fg-color--lighter);border-radius:.1rem}
.md-typeset button.md-button{cursor:pointer;font:inherit;font-size:.7rem;padding:.3rem .9rem}
.md-typeset td pre{margin:.3rem 0}
</style></head>
<body dir="ltr" data-md-color-scheme="{{ palette.scheme }}"
 data-md-color-primary="{{ palette.primary }}" data-md-color-accent="{{ palette.accent }}">
<header class="md-header" data-md-component="header">
<nav class="md-header__inner md-grid" aria-label="Header">
<a href="/dashboard" title="formarket" class="md-header__button md-logo"
 aria-label="formarket">{{ logo | safe }}</a>
<div class="md-header__title"><div class="md-header__ellipsis"><div class="md-header__topic">
<span class="md-ellipsis">formarket · dashboard</span></div></div></div>
{% if account %}<div class="fm-dash-who"><span>{{ account }}</span>
<form method="post" action="/dashboard/logout"><input type="hidden" name="csrf"
 value="{{ csrf }}"><button>Sign out</button></form></div>{% endif %}
</nav></header>
<div class="md-container">
{% if account %}<nav class="md-tabs" aria-label="Tabs"><div class="md-grid">
<ul class="md-tabs__list">
{% for path, name in tabs %}<li class="md-tabs__item{% if path == here %} md-tabs__item--active
{% endif %}"><a href="{{ path }}" class="md-tabs__link">{{ name }}</a></li>{% endfor %}
</ul></div></nav>{% endif %}
<main class="md-main"><div class="md-main__inner md-grid"><div class="md-content">
<article class="md-content__inner md-typeset"><h1>{{ title }}</h1>
{% block body %}{% endblock %}</article></div></div></main></div></body></html>"""

_HOME = (
    """{% extends "base" %}{% block body %}
{% if new_key %}<p class="fm-new-key">Your new key (shown this once):
<code id="new-key">{{ new_key }}</code></p>{% endif %}
{% if topup_note %}<p class="fm-new-key">{{ topup_note }}</p>{% endif %}
<h2>My credit</h2>
{% if credit_notice %}<div class="admonition warning"><p class="admonition-title">Out of
credit</p><p id="credit-notice">{{ credit_notice }}</p></div>{% endif %}
<p>Balance <strong id="balance">{{ credit.balance | money }} {{ credit.currency }}</strong>
<span class="fm-note">({{ credit.available | money }} available,
{{ credit.held | money }} held by calls in progress;
{{ credit.credited | money }} topped up, {{ credit.spent | money }} spent)</span></p>
{% if can_top_up %}<form class="fm-form" method="post" action="/dashboard/topups">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Amount ({{ credit.currency }}) <input name="amount" value="10.00" inputmode="decimal"
 maxlength="12"></label><button class="md-button md-button--primary">Top up</button></form>
{% else %}<p class="fm-empty">Top-ups are off on this control plane.</p>{% endif %}
{% if topups %}"""
    + _TABLE_OPEN
    + """<thead><tr><th>Top-up</th><th>Amount</th><th>State</th><th>Started</th></tr></thead>
<tbody>{% for t in topups %}<tr><td><code>{{ t.id[-8:] }}</code></td>
<td>{{ t.amount | money }} {{ t.currency }}</td><td>{{ t.state }}</td>
<td>{{ t.created_at.strftime("%Y-%m-%d %H:%M") }}</td></tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """{% endif %}
{% if subscriptions %}<h2>My subscriptions</h2>"""
    + _TABLE_OPEN
    + """<thead><tr><th>Listing</th><th>Tier</th><th>State</th><th>A month</th>
<th>Included requests used</th><th>Included tokens used</th><th>Beyond</th><th>Renews</th>
</tr></thead>
<tbody>{% for s in subscriptions %}<tr><td>{{ s.listing }}</td><td>{{ s.tier }}</td>
<td>{{ s.state }}</td><td>{{ s.price | money }} {{ credit.currency }}</td>
<td>{% if s.included_requests is none %}unlimited{% else %}{{ s.used_requests }} of
{{ s.included_requests }}{% endif %}</td>
<td>{% if s.included_tokens is none %}unlimited{% else %}{{ s.used_tokens }} of
{{ s.included_tokens }}{% endif %}</td>
<td>{% if s.overage is none %}refused{% else %}{{ s.overage | money }} a request{% endif %}</td>
<td>{{ s.period_end.strftime("%Y-%m-%d") }}</td></tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """<p class="fm-note">Used: what the gateways wrote back and what they hold for calls
now. <code>formarket subscriptions cancel ID</code> stops one's renewals.</p>{% endif %}
<h2>My deployments</h2>
{% if deployments %}"""
    + _TABLE_OPEN
    + """<thead><tr><th>Deployment</th><th>Listing</th><th>State</th><th></th></tr></thead>
<tbody>{% for d in deployments %}<tr><td><code>{{ d.id }}</code></td>
<td>{{ d.listing }}@{{ d.version }} ({{ d.kind }})</td><td>{{ d.state }}</td><td>
{% if d.state == "running" %}<details><summary>Call it</summary>
<pre><code>curl -s {{ gateway }}/v1/chat/completions \\
  -H "Authorization: Bearer ${{ key_variable }}" \\
  -H 'Content-Type: application/json' \\
  -d '{"model": "{{ d.id }}", "messages": [{"role": "user", "content": "Hello"}]}'</code></pre>
<pre><code>import json, os, urllib.request
body = {"model": "{{ d.id }}", "messages": [{"role": "user", "content": "Hello"}]}
request = urllib.request.Request(
    "{{ gateway }}/v1/chat/completions", data=json.dumps(body).encode(),
    headers={"Authorization": "Bearer " + os.environ["{{ key_variable }}"],
             "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request))["choices"][0]["message"]["content"])</code></pre>
</details>
<form class="fm-inline" method="post" action="/dashboard/deployments/{{ d.id }}/stop">
<input type="hidden" name="csrf" value="{{ csrf }}"><button class="md-button">Stop</button>
</form>{% endif %}</td></tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
{% else %}<p class="fm-empty">No deployments yet: <code>formarket deploy</code>, or the
catalog's deploy button.</p>{% endif %}
<h2>My keys</h2>"""
    + _TABLE_OPEN
    + """<thead><tr><th>Key</th><th>Name</th><th>Scope</th><th>Expires</th><th>State</th>
<th></th></tr></thead><tbody>
{% for k in keys %}<tr><td><code>{{ k.shown }}</code></td><td>{{ k.name }}</td>
<td>{{ k.deployment or "all deployments" }}</td><td>{{ k.expires_at or "never" }}</td>
<td>{{ "revoked" if k.revoked_at else "active" }}</td><td>{% if not k.revoked_at %}
<form class="fm-inline" method="post" action="/dashboard/keys/{{ k.id }}/revoke">
<input type="hidden" name="csrf" value="{{ csrf }}"><button class="md-button">Revoke</button>
</form>{% endif %}</td></tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
<form class="fm-form" method="post" action="/dashboard/keys">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Name <input name="name" maxlength="100"></label>
<label>Only deployment <input name="deployment" placeholder="all"></label>
<button class="md-button md-button--primary">Create a key</button></form>
<h2>My usage by day</h2>
{% if chart %}{{ chart | safe }}"""
    + _TABLE_OPEN
    + """<thead><tr><th>Day</th><th>Deployment</th><th>Calls</th><th>Failed</th>
<th>Input tokens</th><th>Output tokens</th></tr></thead><tbody>
{% for r in usage %}<tr><td>{{ r.day }}</td><td>{{ r.deployment }}</td><td>{{ r.calls }}</td>
<td>{{ r.failed }}</td><td>{{ r.input_tokens }}</td><td>{{ r.output_tokens }}</td></tr>
{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
{% else %}<p class="fm-empty">No usage committed yet.</p>{% endif %}{% endblock %}"""
)

_LISTINGS = (
    """{% extends "base" %}{% block body %}
{% if not publishers %}<p class="fm-empty">{{ account }} owns no publisher. A publisher's file,
<code>registry/publishers/NAME.yaml</code>, names its owners by GitHub login; its listings'
usage shows here for them.</p>
{% else %}<p class="fm-lead">The listings of {{ publishers | join(", ") }}, as the usage
committed to git counts them: what a royalty close would count, before duplicates are settled.
Earnings are in each closed period's statements.</p>
{% if chart %}{{ chart | safe }}
<h2>By day and version</h2>"""
    + _TABLE_OPEN
    + """<thead><tr><th>Day</th><th>Listing</th><th>Version</th><th>Calls</th><th>Failed</th>
<th>Input tokens</th><th>Output tokens</th><th>Instance seconds</th></tr></thead><tbody>
{% for r in usage %}<tr><td>{{ r.day }}</td><td>{{ r.listing }}</td><td>{{ r.version }}</td>
<td>{{ r.calls }}</td><td>{{ r.failed }}</td><td>{{ r.input_tokens }}</td>
<td>{{ r.output_tokens }}</td><td>{{ r.seconds }}</td></tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
<h2>By version</h2>"""
    + _TABLE_OPEN
    + """<thead><tr><th>Listing</th><th>Version</th><th>Calls</th><th>Input tokens</th>
<th>Output tokens</th></tr></thead><tbody>
{% for v in versions %}<tr><td>{{ v.listing }}</td><td>{{ v.version }}</td><td>{{ v.calls }}</td>
<td>{{ v.input_tokens }}</td><td>{{ v.output_tokens }}</td></tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
{% else %}<p class="fm-empty">No usage of these listings committed yet.</p>{% endif %}
<h2>Earnings by period</h2>
{% if statements %}"""
    + _TABLE_OPEN
    + """<thead><tr><th>Period</th><th>Publisher</th><th>Currency</th><th>Gross</th>
<th>Your share</th><th>Platform</th></tr></thead><tbody>
{% for s in statements %}{% for c in s.currencies %}<tr><td>{{ s.period }}</td>
<td>{{ s.publisher }}</td><td>{{ c.currency }}</td><td>{{ c.gross }}</td>
<td>{{ c.creator }}</td><td>{{ c.platform }}</td></tr>{% endfor %}{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
<h2>Payouts</h2>"""
    + _TABLE_OPEN
    + """<thead><tr><th>Period</th><th>Publisher</th><th>Currency</th><th>Due</th><th>Paid</th>
<th>Fee</th><th>Carried over</th><th>Status</th><th>Reference</th></tr></thead><tbody>
{% for s in statements %}{% for p in s.payouts %}<tr><td>{{ s.period }}</td>
<td>{{ p.publisher }}</td><td>{{ p.currency }}</td><td>{{ p.due }}</td><td>{{ p.paid }}</td>
<td>{{ p.fee }}</td><td>{{ p.closing_balance }}</td><td>{{ p.status }}</td>
<td>{{ p.reference or "none" }}</td></tr>{% endfor %}{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
{% else %}<p class="fm-empty">No period closed with earnings of yours yet: a period's
statements are written when it is closed (<code>formarket royalties close</code>).</p>
{% endif %}{% endif %}{% endblock %}"""
)

_INVOICES = (
    """{% extends "base" %}{% block body %}
<p class="fm-lead">Each closed period in which you used, topped up or were charged anything has
an invoice. Only you see it; its SHA-256 is committed to git with the period's close, in
<code>royalties/YYYY-MM/invoices.json</code>, so that you can check that it is the one the
close computed (<code>formarket invoices</code>).</p>
{% if invoices %}"""
    + _TABLE_OPEN
    + """<thead><tr><th>Period</th><th>Usage</th><th>Closing balance</th><th>SHA-256</th>
<th></th></tr></thead><tbody>
{% for i in invoices %}<tr><td><a href="/dashboard/invoices/{{ i.period }}">{{ i.period }}</a>
</td><td>{% for currency, amount in i.totals %}{{ amount | money }} {{ currency }}{% if not
loop.last %}<br>{% endif %}{% else %}none{% endfor %}</td>
<td>{{ i.closing_balance | money }} {{ currency }}</td><td><code>{{ i.sha256[:16] }}…</code></td>
<td><a href="/dashboard/invoices/{{ i.period }}/download" download>Download</a></td></tr>
{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """
{% else %}<p class="fm-empty">No invoice yet: a period's invoices are written when it is
closed, after its month ends.</p>{% endif %}{% endblock %}"""
)

_INVOICE = (
    """{% extends "base" %}{% block body %}
<p><a class="md-button md-button--primary" id="download"
 href="/dashboard/invoices/{{ invoice.period }}/download" download>Download
invoice-{{ invoice.period }}.json</a> <a href="/dashboard/invoices">All invoices</a></p>
<p class="fm-note">SHA-256 <code id="sha256">{{ sha256 }}</code>: the close of
{{ invoice.period }} committed it to git. Your name there is
<code>{{ invoice.account }}</code>; the usage counted is git's at
<code>{{ invoice.usage_commit[:12] }}</code>.</p>
<h2>Usage</h2>
{% for c in invoice.currencies %}<h3>In {{ c.currency }}</h3>"""
    + _TABLE_OPEN
    + """<thead><tr><th>Listing</th><th>Version</th><th>Metric</th><th>Quantity</th>
<th>Unit price</th><th>Amount</th></tr></thead><tbody>
{% for line in c.lines %}<tr><td>{{ line.listing }}</td><td>{{ line.version }}</td>
<td>{{ metrics.get(line.metric, line.metric) }}{% if line.usage_period != invoice.period %}
(from {{ line.usage_period }}){% endif %}</td><td>{{ "{:,}".format(line.quantity) }}</td>
<td>{{ line.unit_price }} per {{ line.price_unit }}</td>
<td>{{ line.amount | money }} {{ c.currency }}</td></tr>{% endfor %}
<tr><td colspan="5"><strong>Total</strong></td>
<td><strong>{{ c.total | money }} {{ c.currency }}</strong></td></tr></tbody>"""
    + _TABLE_CLOSE
    + """{% else %}<p class="fm-empty">No usage in {{ invoice.period }}.</p>{% endfor %}
<h2>Top-ups</h2>
{% if invoice.top_ups %}"""
    + _TABLE_OPEN
    + """<thead><tr><th>Credited</th><th>Checkout</th><th>Amount</th></tr></thead><tbody>
{% for t in invoice.top_ups %}<tr><td>{{ t.credited_at.strftime("%Y-%m-%d %H:%M") }}</td>
<td><code>{{ t.reference }}</code></td><td>{{ t.amount | money }} {{ balance.currency }}</td>
</tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """{% else %}<p class="fm-empty">No top-up in {{ invoice.period }}.</p>{% endif %}
<h2>Charges</h2>
{% if invoice.charges %}"""
    + _TABLE_OPEN
    + """<thead><tr><th>Charged</th><th>For</th><th>Reference</th><th>Amount</th></tr></thead>
<tbody>{% for ch in invoice.charges %}<tr>
<td>{{ ch.charged_at.strftime("%Y-%m-%d %H:%M") }}</td><td>{{ ch.kind }}</td>
<td><code>{{ ch.reference }}</code></td><td>{{ ch.amount | money }} {{ balance.currency }}</td>
</tr>{% endfor %}</tbody>"""
    + _TABLE_CLOSE
    + """{% else %}<p class="fm-empty">No subscription charged in {{ invoice.period }}.</p>
{% endif %}
<h2>Balance</h2>"""
    + _TABLE_OPEN
    + """<tbody>
<tr><td>Opening balance</td><td id="opening-balance">{{ balance.opening | money }}
{{ balance.currency }}</td></tr>
<tr><td>Top-ups</td><td>+ {{ balance.top_ups | money }} {{ balance.currency }}</td></tr>
<tr><td>Usage</td><td>− {{ balance.usage | money }} {{ balance.currency }}</td></tr>
<tr><td>Charges</td><td>− {{ balance.charges | money }} {{ balance.currency }}</td></tr>
<tr><td><strong>Closing balance</strong></td><td><strong id="closing-balance">{{
balance.closing | money }} {{ balance.currency }}</strong></td></tr></tbody>"""
    + _TABLE_CLOSE
    + """{% endblock %}"""
)

_TEMPLATES = {
    "base": _BASE,
    "home": _HOME,
    "listings": _LISTINGS,
    "invoices": _INVOICES,
    "invoice": _INVOICE,
    "checkout": """{% extends "base" %}{% block body %}
<p>A checkout of {{ checkout.amount }} {{ checkout.currency }} is open at the payment
provider. Pay there; you come back here, and your balance grows once the provider confirms
the payment.</p>
<p><a class="md-button md-button--primary" id="checkout" href="{{ checkout.url }}">Pay
{{ checkout.amount }} {{ checkout.currency }} with the payment provider</a></p>
<p><a href="/dashboard">Back to the dashboard</a></p>{% endblock %}""",
    "sign_in": """{% extends "base" %}{% block body %}<p>{{ message }}</p>
<p><a class="md-button md-button--primary" href="/dashboard/login">Sign in with GitHub</a></p>
{% endblock %}""",
    "message": """{% extends "base" %}{% block body %}<p>{{ message }}</p>
<p><a href="/dashboard">Back to the dashboard</a></p>{% endblock %}""",
}
_ENV = Environment(loader=DictLoader(_TEMPLATES), autoescape=True)


def _money(value: Decimal) -> str:
    """An amount with at least its cents and no trailing zeros past them: credit is kept to
    eighteen places, and a call may cost a fraction of a cent."""
    whole, _, fraction = format(value.normalize(), "f").partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


_ENV.filters["money"] = _money
TABS = (
    ("/dashboard", "My deployments"),
    ("/dashboard/invoices", "My invoices"),
    ("/dashboard/listings", "My listings"),
)


def render(template: str, title: str, **context: object) -> str:
    return _ENV.get_template(template).render(title=title, palette=PALETTE, tabs=TABS, **context)
