"""The exodus-day benchmark (issue 11): the whole platform under load and faults, measured.

`population` (who, when, whom they follow), `sim_bluesky` / `sim_mastodon` (the networks, with
their limits, compressed), `orchestra` (servers, replicas, chaos), `driver` (plays the day on
the bus, samples lag and memory), `check` (what should have happened vs what the networks saw),
`report` (markdown and plots), `run` (one run), `__main__` (the command).
"""
