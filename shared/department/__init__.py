"""The department SDK: declare a department, its actions and rules; the SDK does the rest."""
