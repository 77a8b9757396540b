"""A member's referral share: their code, WeChat's QR code for it, and the image to send.

Why temporary QR codes (QR_STR_SCENE, 30 days) rather than permanent ones: an account may make
at most 100,000 permanent codes, ever, and a normal shop has a million members; permanent codes
cannot be revoked either. A temporary code costs one qrcode/create call per member per month
(the API allows 100,000 a day) and carries the scene ``ref_<code>``, so nothing else needs
storing on WeChat's side. The code and image are cached on the member's link row and made
again when fewer than ``qr_renew_days`` remain, so a code a member shares stays valid for at
least that long. The image is rendered here from the code's ``url`` (segno) and uploaded as
temporary media, which WeChat keeps three days; it is reused for two and a half.

When WeChat cannot be reached the member still gets their page link; the page shows the QR
code whenever one was made.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta

import segno
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.wechat.client import WeChatAPIError, WeChatClient
from models.referrals import SCENE_PREFIX, ReferralLink, Share, link_for
from models.rules import ProgrammeRules

log = logging.getLogger(__name__)
MEDIA_REUSE = timedelta(hours=60)  # WeChat keeps temporary media 72 hours


def qr_png(url: str) -> bytes:
    """The QR code for ``url`` as a PNG a phone can scan from a chat image."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=8, border=2)
    return buffer.getvalue()


def qr_svg(url: str) -> str:
    """The QR code for ``url`` as inline SVG (the referral page)."""
    return segno.make(url, error="m").svg_inline(scale=6, border=2)


class ReferralShares:
    """Makes and caches members' QR codes and images (see the module's docstring)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        wechat: WeChatClient,
        rules: ProgrammeRules,
        public_url: str,
    ) -> None:
        self._sessions = sessions
        self._wechat = wechat
        self._rules = rules
        self._public_url = public_url.rstrip("/")

    def page_url(self, code: str) -> str:
        return f"{self._public_url}/r/{code}"

    async def share(self, member_id: int, now: datetime) -> Share:
        """The member's share, making the QR code and image if missing or about to expire."""
        async with self._sessions.begin() as session:
            link = await link_for(session, member_id, now)
            code = link.code
            qr_url, qr_expires = link.qr_url, link.qr_expires_at
            media_id, media_expires = link.media_id, link.media_expires_at
        renew = timedelta(days=self._rules.referrals.qr_renew_days)
        try:
            if qr_url is None or qr_expires is None or qr_expires - now < renew:
                qr = await self._wechat.create_qr_code(
                    SCENE_PREFIX + code, self._rules.referrals.qr_days * 86_400
                )
                qr_url, qr_expires = qr.url, now + timedelta(seconds=qr.expire_seconds)
                await self._store(
                    member_id,
                    qr_ticket=qr.ticket,
                    qr_url=qr_url,
                    qr_expires_at=qr_expires,
                    media_id=None,
                    media_expires_at=None,
                )
                media_id = None
            if media_id is None or media_expires is None or media_expires <= now:
                media_id = await self._wechat.upload_temporary_image(qr_png(qr_url))
                await self._store(member_id, media_id=media_id, media_expires_at=now + MEDIA_REUSE)
        except WeChatAPIError as exc:
            log.warning("referral QR code not made", extra={"errcode": exc.errcode, "api": exc.api})
            media_id = None
        return Share(code, self.page_url(code), media_id)

    async def _store(self, member_id: int, **values: object) -> None:
        async with self._sessions.begin() as session:
            link = await session.get_one(ReferralLink, member_id)
            for name, value in values.items():
                setattr(link, name, value)
