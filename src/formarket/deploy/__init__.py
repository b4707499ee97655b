"""Deployment requests: what a user asks for, from `formarket deploy` or from a GitHub issue,
checked in full against the registry (listings and versions, agent–model compatibility,
resources, settings, secrets) before the bot commits the resulting desired deployments to
`registry/deployments/`. The checks are pure (`checks`); GitHub is reached through
`formarket.github`, with a local stand-in speaking the same routes (`formarket.standins.github`)
for tests and the demo; the issue flow (`issue_form`, `issue_flow`) never hands issue text to a
shell.
"""
