"""Pure domain: facts, the charter's rules and the books. No I/O, no clock."""
