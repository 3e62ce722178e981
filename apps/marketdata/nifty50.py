"""The NIFTY 50 constituents (late-2025 list, the symbols of the shared daily data).

Reference prices are round figures near the late-2024 levels, used only as
starting points of the synthetic demo series. Pure data, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Constituent:
    symbol: str
    name: str
    reference_price: Decimal
    sector: str


def _c(symbol: str, name: str, price: str, sector: str) -> Constituent:
    return Constituent(symbol, name, Decimal(price), sector)


UNIVERSE_NAME = "NIFTY 50"

CONSTITUENTS: tuple[Constituent, ...] = (
    _c("ADANIENT", "ADANI ENTERPRISES", "3100", "metals_mining"),
    _c("ADANIPORTS", "ADANI PORTS AND SEZ", "1450", "services"),
    _c("APOLLOHOSP", "APOLLO HOSPITALS", "7200", "healthcare"),
    _c("ASIANPAINT", "ASIAN PAINTS", "3300", "consumer"),
    _c("AXISBANK", "AXIS BANK", "1230", "financials"),
    _c("BAJAJ-AUTO", "BAJAJ AUTO", "12300", "auto"),
    _c("BAJAJFINSV", "BAJAJ FINSERV", "1970", "financials"),
    _c("BAJFINANCE", "BAJAJ FINANCE", "770", "financials"),
    _c("BEL", "BHARAT ELECTRONICS", "285", "capital_goods"),
    _c("BHARTIARTL", "BHARTI AIRTEL", "1710", "telecom"),
    _c("CIPLA", "CIPLA", "1650", "healthcare"),
    _c("COALINDIA", "COAL INDIA", "510", "metals_mining"),
    _c("DRREDDY", "DR. REDDY'S LABORATORIES", "1350", "healthcare"),
    _c("EICHERMOT", "EICHER MOTORS", "5000", "auto"),
    _c("ETERNAL", "ETERNAL", "270", "services"),
    _c("GRASIM", "GRASIM INDUSTRIES", "2800", "materials"),
    _c("HCLTECH", "HCL TECHNOLOGIES", "1800", "it"),
    _c("HDFCBANK", "HDFC BANK", "870", "financials"),
    _c("HDFCLIFE", "HDFC LIFE INSURANCE", "720", "financials"),
    _c("HEROMOTOCO", "HERO MOTOCORP", "5700", "auto"),
    _c("HINDALCO", "HINDALCO INDUSTRIES", "750", "metals_mining"),
    _c("HINDUNILVR", "HINDUSTAN UNILEVER", "2950", "consumer"),
    _c("ICICIBANK", "ICICI BANK", "1270", "financials"),
    _c("INDUSINDBK", "INDUSIND BANK", "1450", "financials"),
    _c("INFY", "INFOSYS", "1870", "it"),
    _c("ITC", "ITC", "520", "consumer"),
    _c("JIOFIN", "JIO FINANCIAL SERVICES", "350", "financials"),
    _c("JSWSTEEL", "JSW STEEL", "1030", "metals_mining"),
    _c("KOTAKBANK", "KOTAK MAHINDRA BANK", "1850", "financials"),
    _c("LT", "LARSEN & TOUBRO", "3670", "capital_goods"),
    _c("M&M", "MAHINDRA & MAHINDRA", "3100", "auto"),
    _c("MARUTI", "MARUTI SUZUKI INDIA", "13200", "auto"),
    _c("NESTLEIND", "NESTLE INDIA", "1350", "consumer"),
    _c("NTPC", "NTPC", "440", "power"),
    _c("ONGC", "OIL AND NATURAL GAS CORPORATION", "300", "energy"),
    _c("POWERGRID", "POWER GRID CORPORATION OF INDIA", "350", "power"),
    _c("RELIANCE", "RELIANCE INDUSTRIES", "1480", "energy"),
    _c("SBILIFE", "SBI LIFE INSURANCE", "1840", "financials"),
    _c("SBIN", "STATE BANK OF INDIA", "790", "financials"),
    _c("SHRIRAMFIN", "SHRIRAM FINANCE", "715", "financials"),
    _c("SUNPHARMA", "SUN PHARMACEUTICAL INDUSTRIES", "1930", "healthcare"),
    _c("TATACONSUM", "TATA CONSUMER PRODUCTS", "1200", "consumer"),
    _c("TATAMOTORS", "TATA MOTORS", "975", "auto"),
    _c("TATASTEEL", "TATA STEEL", "170", "metals_mining"),
    _c("TCS", "TATA CONSULTANCY SERVICES", "4270", "it"),
    _c("TECHM", "TECH MAHINDRA", "1580", "it"),
    _c("TITAN", "TITAN COMPANY", "3820", "consumer"),
    _c("TRENT", "TRENT", "7570", "consumer"),
    _c("ULTRACEMCO", "ULTRATECH CEMENT", "11800", "materials"),
    _c("WIPRO", "WIPRO", "270", "it"),
)

assert len(CONSTITUENTS) == 50 and len({c.symbol for c in CONSTITUENTS}) == 50
