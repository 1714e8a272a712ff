"""``python -m services.router``: run the router."""

from services.router.main import main
from shared.platform import aio

aio.run(main())
