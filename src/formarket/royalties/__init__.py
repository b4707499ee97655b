"""Royalties: committed usage in, statements, a double-entry ledger and payouts out.

    tally       scans of usage files (formarket.usage.reader) -> the period's usage per
                listing version, duplicates settled exactly
    pricebook   the listing history -> the terms of every published version
    rating      usage x terms -> statement lines, rounded once, split creator / platform
    ledger      statement lines and payouts -> balanced transactions
    payouts     balances, holds, thresholds -> what is paid and what is carried
    close       all of the above -> the documents of a closed period, and their bytes
    render      Markdown for people
    transfers   a closed period's payouts -> which to send now, under which key; the check of
                a record of transfers against the close
    sent        the record of transfers in git (royalties/transfers/YYYY-MM.json) and its
                history: only the bot, only appending
    gitio       the one door to git (reading); formarket.usage.scanner reads usage
    engine      the driver: close, preview, verify against a repository
    simulate    seeded usage until the gateway exists; demo: the demo's royalties step

Everything but gitio, sent and engine is a pure function of its arguments.
"""
