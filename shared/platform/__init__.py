"""A process's basics: settings, logging, PostgreSQL, asyncio helpers, service runtime."""
