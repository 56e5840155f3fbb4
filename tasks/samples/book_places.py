"""Places for the book-request samples: towns in the US, UK, Canada, Australia and India, their
postcodes, phone numbers and street types, and addresses written the way people there write them.
"""
from __future__ import annotations

import random

import numpy as np

# town, region code, region name, postcode stem, phone country code + area code, country
_TOWNS = """\
Springfield|IL|Illinois|627|1217|US;Chicago|IL|Illinois|606|1312|US;Austin|TX|Texas|787|1512|US;\
Houston|TX|Texas|770|1713|US;Dallas|TX|Texas|752|1214|US;Boston|MA|Massachusetts|021|1617|US;\
Worcester|MA|Massachusetts|016|1508|US;Denver|CO|Colorado|802|1303|US;Boulder|CO|Colorado|803|1720|US;\
Miami|FL|Florida|331|1305|US;Orlando|FL|Florida|328|1407|US;Tampa|FL|Florida|336|1813|US;\
Seattle|WA|Washington|981|1206|US;Spokane|WA|Washington|992|1509|US;Portland|OR|Oregon|972|1503|US;\
Eugene|OR|Oregon|974|1541|US;Phoenix|AZ|Arizona|850|1602|US;Tucson|AZ|Arizona|857|1520|US;\
Atlanta|GA|Georgia|303|1404|US;Savannah|GA|Georgia|314|1912|US;New York|NY|New York|100|1212|US;\
Buffalo|NY|New York|142|1716|US;Albany|NY|New York|122|1518|US;Newark|NJ|New Jersey|071|1973|US;\
Trenton|NJ|New Jersey|086|1609|US;Philadelphia|PA|Pennsylvania|191|1215|US;Pittsburgh|PA|Pennsylvania|152|1412|US;\
Columbus|OH|Ohio|432|1614|US;Cleveland|OH|Ohio|441|1216|US;Detroit|MI|Michigan|482|1313|US;\
Lansing|MI|Michigan|489|1517|US;Charlotte|NC|North Carolina|282|1704|US;Raleigh|NC|North Carolina|276|1919|US;\
Nashville|TN|Tennessee|372|1615|US;Memphis|TN|Tennessee|381|1901|US;Minneapolis|MN|Minnesota|554|1612|US;\
St. Louis|MO|Missouri|631|1314|US;Kansas City|MO|Missouri|641|1816|US;Salt Lake City|UT|Utah|841|1801|US;\
Las Vegas|NV|Nevada|891|1702|US;San Diego|CA|California|921|1619|US;Oakland|CA|California|946|1510|US;\
London|||NW|4420|GB;Manchester|||M|44161|GB;Leeds|||LS|44113|GB;Bristol|||BS|44117|GB;\
Toronto|ON|Ontario|M|1416|CA;Vancouver|BC|British Columbia|V|1604|CA;Calgary|AB|Alberta|T|1403|CA;\
Ottawa|ON|Ontario|K|1613|CA;Sydney|NSW|New South Wales|2|612|AU;Melbourne|VIC|Victoria|3|613|AU;\
Brisbane|QLD|Queensland|4|617|AU;Perth|WA|Western Australia|6|618|AU;Hobart|TAS|Tasmania|7|613|AU;\
Bengaluru|KA|Karnataka|560|9180|IN;Mumbai|MH|Maharashtra|400|9122|IN;Chennai|TN|Tamil Nadu|600|9144|IN;\
Pune|MH|Maharashtra|411|9120|IN"""
TOWNS = [tuple(entry.split("|")) for entry in _TOWNS.split(";")]
COUNTRY = np.array([t[5] for t in TOWNS], dtype=object)
SUBURBS = {
    "GB": "Camden Islington Hackney Didsbury Headingley Clifton Chorlton Roundhay Redland Brixton".split(),
    "AU": ("Bondi Randwick Carlton Fitzroy Toowong Paddington Subiaco Sandy-Bay Winston-Hills Mount-Evelyn "
           "Glen-Waverley Box-Hill").split(),
    "IN": "Indiranagar Koramangala Bandra Andheri Adyar Kothrud Jayanagar Powai Velachery Aundh".split(),
}
BUILDINGS = ("Rose Court|Wattle Views|Shanti Apartments|Maple House|Harbour Towers|Kingsley Mansions|"
             "Green Acres|Sunrise Residency|The Lodge|Riverside Gardens|Oak Lodge|Lakshmi Nilayam").split("|")
# street types people use in each country: (long, short)
TYPES = {
    "US": [("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Boulevard", "Blvd"), ("Drive", "Dr"),
           ("Lane", "Ln"), ("Court", "Ct"), ("Place", "Pl"), ("Terrace", "Ter"), ("Way", "Way")],
    "GB": [("Road", "Rd"), ("Street", "St"), ("Close", "Cl"), ("Gardens", "Gdns"), ("Lane", "Ln"),
           ("Avenue", "Ave"), ("Crescent", "Cres"), ("Mews", "Mews"), ("Grove", "Gr"), ("Terrace", "Tce")],
    "CA": [("Street", "St"), ("Avenue", "Ave"), ("Crescent", "Cres"), ("Drive", "Dr"), ("Road", "Rd"),
           ("Boulevard", "Blvd"), ("Court", "Crt")],
    "AU": [("Street", "St"), ("Road", "Rd"), ("Crescent", "Cres"), ("Circuit", "Cct"), ("Close", "Cl"),
           ("Parade", "Pde"), ("Place", "Pl"), ("Avenue", "Ave"), ("Drive", "Dr"), ("Court", "Ct")],
    "IN": [("Road", "Rd"), ("Marg", "Marg"), ("Street", "St"), ("Lane", "Ln"), ("Main Road", "Main Rd")],
}
NSN_DIGITS = {"US": 10, "CA": 10, "GB": 10, "AU": 9, "IN": 10}  # national number length
CODE_DIGITS = {"US": 1, "CA": 1, "GB": 2, "AU": 2, "IN": 2}  # country calling code length
FIRST_DIGIT = {("GB", 8): "7", ("GB", 7): "4", ("AU", 8): "9", ("IN", 8): "2"}  # a valid local number begins so
UNIT_LABELS = {"US": ["Apt ", "Apt. ", "#", "Unit ", "Apartment ", "Suite "], "GB": ["Flat ", "Flat ", "Apartment "],
               "CA": ["Unit ", "Suite ", "Apt "], "AU": ["Unit ", "Unit ", "Apartment "], "IN": ["Flat ", "Flat No. "]}


def postcodes(town: np.ndarray, rng: np.random.Generator) -> list[str]:
    """A postcode in each town's format (US 62704, GB NW1 8AB, CA M5V 2T6, AU 2026, IN 560038)."""
    out = []
    for t, a, b, c in zip(town, rng.integers(1, 40, len(town)), rng.integers(0, 10, len(town)),
                          rng.integers(0, 26 * 26, len(town))):
        stem, country = TOWNS[t][3], TOWNS[t][5]
        letters = chr(65 + c // 26) + chr(65 + c % 26)
        out.append({"US": f"{stem}{a:02d}", "GB": f"{stem}{a % 20 + 1} {b}{letters}",
                    "CA": f"{stem}{b}{letters[0]} {a % 10}{letters[1]}{b}", "AU": f"{stem}{a:03d}",
                    "IN": f"{stem}{a:03d}"}[country])
    return out


def phones(town: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """E.164 numbers with each town's area code."""
    out = []
    for t, number in zip(town, rng.integers(2 * 10**7, 10**8, len(town))):
        prefix, country = TOWNS[t][4], TOWNS[t][5]
        local = NSN_DIGITS[country] - (len(prefix) - CODE_DIGITS[country])
        digits = FIRST_DIGIT.get((country, local), "") + str(number)
        out.append(f"+{prefix}{digits[:local]}")
    return np.array(out, dtype=object)


def render_phone(e164: str, country: str, r: random.Random) -> str:
    """How a person writes the number: US/CA national forms, elsewhere with the country code."""
    if not e164:
        return ""
    if country in ("US", "CA"):
        a, b, c = e164[2:5], e164[5:8], e164[8:]
        return r.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}", f"{a}{b}{c}", f"{a}.{b}.{c}"])
    code = CODE_DIGITS[country]
    rest = e164[1 + code:]
    return r.choice([e164, f"+{e164[1:1 + code]} {rest[:-8]} {rest[-8:-4]} {rest[-4:]}".replace("  ", " ")])
