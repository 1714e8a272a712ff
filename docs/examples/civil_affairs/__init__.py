"""Civil affairs: the example department of docs/department-guide.md."""
