"""Words of addresses in the US, UK, Canada, Australia and India: street types, unit words, regions.

Each table maps every spelling to one canonical word; `tasks.apis.addresses` uses them.
"""
from __future__ import annotations

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from tasks.apis.normalise import variants_table

STREET_TYPES = variants_table(
    "st: street str strt; ave: avenue av avn avenu; rd: road; blvd: boulevard boul bvd; dr: drive drv;"
    "ln: lane; ct: court crt; pl: place; ter: terrace tce terr; cir: circle; cct: circuit crct;"
    "cres: crescent cr crs cresent; cl: close; pde: parade; hwy: highway; pkwy: parkway; sq: square;"
    "trl: trail; way; gr: grove; gdns: gardens; mews; esp: esplanade; prom: promenade; marg;"
    "expy: expressway; fwy: freeway; tpke: turnpike; cv: cove; aly: alley")
# long types that people misspell ("setreet", "ecircuit") or glue to the name ("stanleystreet")
LONG_TYPES = ("street", "avenue", "crescent", "circuit", "parade", "terrace", "boulevard", "highway", "parkway",
              "esplanade", "promenade")
UNIT_WORDS = variants_table("unit: apartment apt flat suite ste level lvl room rm shop floor fl unt")
DIRECTIONS = variants_table("n: north; s: south; e: east; w: west; ne: northeast; nw: northwest; se: southeast;"
                            "sw: southwest")
OTHER_WORDS = variants_table("st: saint; mt: mount; ft: fort")
COUNTRY_WORDS = frozenset("usa us america unitedstates unitedstatesofamerica australia aus canada can india ind "
                          "uk unitedkingdom england scotland wales greatbritain gb".split())
MULTI_WORD = (r"\b(united states of america|united states|united kingdom|great britain|new south wales|south australia|"
              r"western australia|northern territory|australian capital territory|british columbia|"
              r"new brunswick|nova scotia|prince edward island|northwest territories|newfoundland and labrador|"
              r"tamil nadu|uttar pradesh|andhra pradesh|madhya pradesh|himachal pradesh|arunachal pradesh|"
              r"west bengal|jammu and kashmir|new hampshire|new jersey|new mexico|new york|north carolina|"
              r"north dakota|south carolina|south dakota|west virginia|rhode island|district of columbia)\b")
# region code: its names (joined where they have several words), per country
REGIONS = {
    "US": variants_table(
        "al: alabama; ak: alaska; az: arizona; ar: arkansas; ca: california; co: colorado; ct: connecticut;"
        "de: delaware; dc: districtofcolumbia; fl: florida; ga: georgia; hi: hawaii; id: idaho; il: illinois;"
        "in: indiana; ia: iowa; ks: kansas; ky: kentucky; la: louisiana; me: maine; md: maryland;"
        "ma: massachusetts; mi: michigan; mn: minnesota; ms: mississippi; mo: missouri; mt: montana;"
        "ne: nebraska; nv: nevada; nh: newhampshire; nj: newjersey; nm: newmexico; ny: newyork;"
        "nc: northcarolina; nd: northdakota; oh: ohio; ok: oklahoma; or: oregon; pa: pennsylvania;"
        "ri: rhodeisland; sc: southcarolina; sd: southdakota; tn: tennessee; tx: texas; ut: utah; vt: vermont;"
        "va: virginia; wa: washington; wv: westvirginia; wi: wisconsin; wy: wyoming; pr: puertorico"),
    "CA": variants_table(
        "on: ontario ont; qc: quebec que pq; bc: britishcolumbia; ab: alberta alta; mb: manitoba man;"
        "sk: saskatchewan sask; ns: novascotia; nb: newbrunswick; nl: newfoundlandandlabrador newfoundland nfld;"
        "pe: princeedwardisland pei; yt: yukon; nt: northwestterritories nwt; nu: nunavut"),
    "AU": variants_table(
        "nsw: newsouthwales; vic: victoria; qld: queensland; sa: southaustralia; wa: westernaustralia;"
        "tas: tasmania; nt: northernterritory; act: australiancapitalterritory"),
    "IN": variants_table(
        "ap: andhrapradesh; ar: arunachalpradesh; as: assam; br: bihar; cg: chhattisgarh ct; ga: goa;"
        "gj: gujarat; hr: haryana; hp: himachalpradesh; jh: jharkhand; ka: karnataka; kl: kerala;"
        "mp: madhyapradesh; mh: maharashtra; mn: manipur; ml: meghalaya; mz: mizoram; nl: nagaland;"
        "od: odisha orissa or; pb: punjab; rj: rajasthan; sk: sikkim; tn: tamilnadu; ts: telangana tg;"
        "tr: tripura; up: uttarpradesh; uk: uttarakhand ut; wb: westbengal; dl: delhi newdelhi;"
        "jk: jammuandkashmir; ch: chandigarh; py: puducherry pondicherry"),
    "GB": {},  # UK addresses name a post town, no region
}
ALL_REGIONS = {word: code for table in REGIONS.values() for word, code in table.items()}


def _long_type(word: str) -> str | None:
    """The street type a misspelt long type word stands for ('setreet' -> 'st'), else None."""
    if len(word) < 5:
        return None
    found = process.extractOne(word, LONG_TYPES, scorer=Levenshtein.distance, score_cutoff=1)
    return STREET_TYPES[found[0]] if found else None


def address_word(word: str) -> str:
    """One address word in canonical form: street types, unit words, directions, saint/mount/fort."""
    for table in (STREET_TYPES, UNIT_WORDS, DIRECTIONS, OTHER_WORDS):
        if word in table:
            return table[word]
    if word in COUNTRY_WORDS or word in ALL_REGIONS:
        return word
    return _long_type(word) or word
