"""Development tools that are not part of the service (lint contracts). Imports none of ours."""
