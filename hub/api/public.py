"""The public page at ``/public`` and its data at ``/api/v1/public/summary``: for citizens, no
token. Korean by default, English with ``?lang=en``; times and days in Korean time (KST).

Pure: the summary's rows in, a localised summary and its HTML out (the SQL is
``hub.management.public``, the caching ``hub.api.routes.public``).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from html import escape
from typing import Any, Final, Literal

from hub.registry.model import KST, district_label

Lang = Literal["ko", "en"]

REGIONS: Final[dict[str, dict[Lang, str]]] = {
    "gwangju": {"ko": "광주광역시", "en": "Gwangju"},
    "jeonnam": {"ko": "전라남도", "en": "South Jeolla"},
}
DISTRICTS_KO: Final[dict[str, str]] = {
    "dong": "동구",
    "seo": "서구",
    "nam": "남구",
    "buk": "북구",
    "gwangsan": "광산구",
    "mokpo": "목포시",
    "yeosu": "여수시",
    "suncheon": "순천시",
    "naju": "나주시",
    "gwangyang": "광양시",
    "damyang": "담양군",
    "gokseong": "곡성군",
    "gurye": "구례군",
    "goheung": "고흥군",
    "boseong": "보성군",
    "hwasun": "화순군",
    "jangheung": "장흥군",
    "gangjin": "강진군",
    "haenam": "해남군",
    "yeongam": "영암군",
    "muan": "무안군",
    "hampyeong": "함평군",
    "yeonggwang": "영광군",
    "jangseong": "장성군",
    "wando": "완도군",
    "jindo": "진도군",
    "sinan": "신안군",
}
TECHNOLOGIES: Final[dict[str, dict[Lang, str]]] = {
    "traffic_hazard_detection": {"ko": "교통 위험 감지", "en": "Traffic hazard detection"},
    "pedestrian_detection": {"ko": "보행자 감지", "en": "Pedestrian detection"},
    "fall_detection": {"ko": "낙상 감지", "en": "Fall detection"},
    "license_plate_recognition": {"ko": "번호판 인식", "en": "Licence plate recognition"},
    "air_quality_forecast": {"ko": "대기질 예측", "en": "Air quality forecast"},
    "smart_lighting": {"ko": "스마트 조명", "en": "Smart lighting"},
    "fire_detection": {"ko": "화재 감지", "en": "Fire detection"},
    "crowd_analytics": {"ko": "인파 분석", "en": "Crowd analytics"},
    "water_safety_detection": {"ko": "수난 안전 감지", "en": "Water safety detection"},
    "crop_disease_detection": {"ko": "작물 병해 감지", "en": "Crop disease detection"},
    "transit_prediction": {"ko": "대중교통 예측", "en": "Transit prediction"},
}
STATUSES: Final[dict[str, dict[Lang, str]]] = {
    "approved": {"ko": "시작 예정", "en": "Starting soon"},
    "active": {"ko": "실증 중", "en": "Running"},
    "ended": {"ko": "종료", "en": "Ended"},
    "archived": {"ko": "종료(보관)", "en": "Ended (archived)"},
}
TEXT: Final[dict[str, dict[Lang, str]]] = {
    "title": {
        "ko": "광주 AI 실증 도시: 지금 실증 중인 기술",
        "en": "Gwangju AI testbed: what is being tried out",
    },
    "intro": {
        "ko": "광주와 전라남도의 거리, 학교, 건물에서 AI 기업들이 제품을 실증하고 있습니다. "
        "각 실증의 목표(KPI) 달성률을 날마다 보여 드립니다.",
        "en": "AI companies are proving their products in the streets, schools and buildings "
        "of Gwangju and South Jeolla. Each demonstration's daily share of its targets (KPIs) "
        "met is shown below.",
    },
    "company": {"ko": "기업", "en": "Company"},
    "technology": {"ko": "기술", "en": "Technology"},
    "period": {"ko": "기간", "en": "Period"},
    "where": {"ko": "지역", "en": "Where"},
    "sites": {"ko": "실증 장소", "en": "Sites"},
    "daily": {"ko": "일별 목표 달성률", "en": "Targets met, by day"},
    "no_data": {"ko": "-: 아직 판정 없음", "en": "-: not judged yet"},
    "more": {"ko": "외 {n}곳", "en": "and {n} more"},
    "none": {"ko": "아직 공개된 실증이 없습니다.", "en": "No demonstration to show yet."},
    "updated": {"ko": "갱신", "en": "Updated"},
    "other": {"ko": "English", "en": "한국어"},
}


def label(table: dict[str, dict[Lang, str]], key: str, lang: Lang) -> str:
    """The key's label in the language; the key itself when the table does not name it (a
    region, technology or status added later)."""
    return table.get(key, {}).get(lang, key)


def district_name(region: str, district: str, lang: Lang) -> str:
    if lang == "ko" and district in DISTRICTS_KO:
        return DISTRICTS_KO[district]
    return district_label(region, district)


def _compliance(passed: int, failed: int) -> float | None:
    decided = passed + failed
    return round(100 * passed / decided, 1) if decided else None


def localise(rows: list[dict[str, Any]], lang: Lang, at: datetime, days: int) -> dict[str, Any]:
    """The summary's rows as the public API answers them: labels in the language, every one of
    the last ``days`` Korean days (a day without a verdict says so), times in KST."""
    today = at.astimezone(KST).date()
    shown_days = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    out = []
    for row in rows:
        judged = {date.fromisoformat(d["day"]): d for d in json.loads(row["daily"])}
        places = json.loads(row["districts"])
        out.append(
            {
                "demonstration_id": row["demonstration_id"],
                "company": row["company"],
                "title": row["title"],
                "technology": row["technology"],
                "technology_label": label(TECHNOLOGIES, row["technology"], lang),
                "status": row["status"],
                "status_label": label(STATUSES, row["status"], lang),
                "starts_on": row["starts_on"].isoformat(),
                "ends_on": row["ends_on"].isoformat(),
                "sites": row["sites"],
                "districts": [
                    {
                        "region": p["region"],
                        "region_label": label(REGIONS, p["region"], lang),
                        "district": p["district"],
                        "label": district_name(p["region"], p["district"], lang),
                    }
                    for p in places
                ],
                "daily_compliance": [
                    {
                        "day": day.isoformat(),
                        "passed": judged.get(day, {}).get("passed", 0),
                        "failed": judged.get(day, {}).get("failed", 0),
                        "compliance_pct": _compliance(
                            judged.get(day, {}).get("passed", 0),
                            judged.get(day, {}).get("failed", 0),
                        ),
                    }
                    for day in shown_days
                ],
            }
        )
    return {
        "lang": lang,
        "timezone": "Asia/Seoul (KST, UTC+9)",
        "generated_at": at.astimezone(KST).isoformat(timespec="seconds"),
        "demonstrations": out,
    }


STYLE: Final = """
body { font-family: system-ui, "Noto Sans KR", "Apple SD Gothic Neo", "NanumGothic", sans-serif;
  margin: 0;
  color: #1d232a; background: #f6f7f9; }
header { background: #1f6fb2; color: #fff; padding: 1rem; }
header h1 { font-size: 1.25rem; margin: 0 0 .4rem; } header p { margin: 0; font-size: .95rem; }
header a { color: #fff; float: right; }
main { padding: .8rem; max-width: 60rem; margin: auto; }
article { background: #fff; border-radius: 8px; padding: .8rem 1rem; margin: 0 0 .8rem;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); }
article h2 { font-size: 1.05rem; margin: 0 0 .3rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: .4rem 0;
  font-size: .9rem; } dt { color: #6b7580; } dd { margin: 0; }
.status { display: inline-block; font-size: .8rem; padding: .05rem .5rem; border-radius: 1rem;
  background: #e3e7eb; } .status.active { background: #2e9e5b; color: #fff; }
.days { display: flex; gap: .25rem; flex-wrap: wrap; margin-top: .3rem; }
.day { flex: 1 0 2.4rem; text-align: center; font-size: .7rem; border-radius: 4px;
  padding: .25rem 0; background: #e3e7eb; }
.legend { color: #6b7580; font-size: .75rem; margin-top: .2rem; }
.day b { display: block; font-size: .9rem; }
.good { background: #cfead9; } .fair { background: #f6e3b5; } .poor { background: #f3c7c7; }
footer { color: #6b7580; font-size: .8rem; text-align: center; padding: 1rem; }
"""


def _day_class(pct: float | None) -> str:
    if pct is None:
        return "day"
    return "day " + ("good" if pct >= 95 else "fair" if pct >= 80 else "poor")


# Districts a card names before "and N more" (the summary's JSON lists them all).
PLACES_SHOWN: Final = 6


def _places(places: list[dict[str, Any]], more: str) -> str:
    """Each region with its first districts: a demonstration over 22 municipalities stays a
    line on a phone."""
    by_region: dict[str, list[str]] = {}
    for p in places:
        by_region.setdefault(p["region_label"], []).append(p["label"])
    parts = []
    for region, names in by_region.items():
        shown = ", ".join(escape(n) for n in names[:PLACES_SHOWN])
        rest = len(names) - PLACES_SHOWN
        parts.append(f"{escape(region)} {shown}" + (f" {more.format(n=rest)}" if rest > 0 else ""))
    return "<br>".join(parts) or "-"


def _day(day: dict[str, Any]) -> str:
    pct = day["compliance_pct"]
    shown = "-" if pct is None else f"{pct:.0f}%"
    return (
        f'<div class="{_day_class(pct)}" data-day="{day["day"]}" data-compliance="{shown}">'
        f"{day['day'][5:]}<b>{shown}</b></div>"
    )


def render_public(summary: dict[str, Any]) -> str:
    """The page: one card per demonstration, readable on a phone."""
    lang: Lang = summary["lang"]
    other = "en" if lang == "ko" else "ko"

    def t(key: str) -> str:
        return TEXT[key][lang]

    cards = []
    for d in summary["demonstrations"]:
        places = _places(d["districts"], t("more"))
        days = "".join(_day(day) for day in d["daily_compliance"])
        cards.append(
            f'<article data-demonstration="{escape(d["demonstration_id"])}">'
            f"<h2>{escape(d['title'])} "
            f'<span class="status {escape(d["status"])}">{escape(d["status_label"])}</span></h2>'
            f"<dl><dt>{t('company')}</dt><dd>{escape(d['company'])}</dd>"
            f"<dt>{t('technology')}</dt><dd>{escape(d['technology_label'])}</dd>"
            f"<dt>{t('period')}</dt><dd>{d['starts_on']} ~ {d['ends_on']}</dd>"
            f"<dt>{t('where')}</dt><dd>{places}</dd>"
            f"<dt>{t('sites')}</dt><dd>{d['sites']:,}</dd></dl>"
            f'<div>{t("daily")}</div><div class="days">{days}</div></article>'
        )
    body = "".join(cards) or f"<p>{t('none')}</p>"
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(t("title"))}</title>
<style>{STYLE}</style></head>
<body>
<header><a href="/public?lang={other}" hreflang="{other}">{t("other")}</a>
<h1>{escape(t("title"))}</h1><p>{escape(t("intro"))}</p></header>
<main>{body}<p class="legend">{t("daily")}: {t("no_data")}</p></main>
<footer>{t("updated")} {escape(summary["generated_at"][:16].replace("T", " "))} KST</footer>
</body></html>"""
