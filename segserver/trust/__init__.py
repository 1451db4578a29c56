"""Trust boundaries (DESIGN.md): who is calling and what they may do (`auth`), the
decision-token secret kept in the data directory (`keyfile`), where the server may
connect (`netpolicy`), and how much anyone may send (`quotas`)."""
