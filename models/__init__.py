"""SQLAlchemy tables and the domain operations on them. Never imports bot/ or handlers/."""

from models.base import Base
from models.members import Member

__all__ = ["Base", "Member"]
