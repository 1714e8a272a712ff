import asyncio

from services.router.main import main

asyncio.run(main())
