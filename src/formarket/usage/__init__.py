"""Usage: one definition of a usage event and of the files it is kept in.

`formarket.schemas.usage.UsageEvent` is the contract (its JSON Schema is exported); this
package owns everything else about an event, for everything that meets usage: the gateway
records and flushes it, the farm meters instance time, the royalties and the site read it.

    events      building events: a call, instance-hours, ids, times
    spool       events on local disk, checksummed per line, until a flush commits them
    files       usage files: their paths in git, their bytes, the limits of a reader
    wire        an event as msgspec decodes it, what makes a line valid, the USG codes
    reader      the one reading of usage files: lines checked and summed, or set aside with
                their code; which files a close reads; the rules of a reading
    columns     a file whose every event counts, checked and summed column by column
    scan        what a reading is given (its rules, its files) and what it finds in a file
    digests     events' keys as 64-bit keyed digests, to find repeated events by sorting
    partials    what each file holds, kept in the cache by blob id and the reading's rules
    scanner     many files read on every core, each once per set of rules
    committed   the usage files of a commit, found through formarket.market

The spool does I/O on local disk, `committed` and `scanner` read git, `partials` the cache;
everything else takes bytes in.
"""
