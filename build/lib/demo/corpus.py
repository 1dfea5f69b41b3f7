"""A deterministic generator of realistic email, for the demo mailbox, tests and benchmarks.

`generate()` yields messages as a support mailbox sees them over a few months: customers
writing in several languages and charsets, staff replies in the Sent folder carrying ticket
references, replies to the replies, forwards with message/rfc822 parts, newsletters with inline
images and tracking pixels, mailing-list mail, auto-replies, a bounce now and then, cold mail from
unknown senders. Everything is built by hand from the stdlib (the `email` package's generator is
far too slow for a 10,000-message benchmark corpus and normalises away the variety we want), and
everything is drawn from one `random.Random(seed)`: the same arguments give byte-identical
output, so the demo data and `bench/sync.py` are reproducible.

Pure Python: this module imports no Django models, so scripts and the benchmark can use it
without a database.
"""

from __future__ import annotations

import base64
import binascii
import html
import random
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

__all__ = [
    "ANSWERED",
    "FLAGGED",
    "INBOX",
    "KINDS",
    "LANGUAGES",
    "SEEN",
    "SENT",
    "Company",
    "GeneratedMessage",
    "Person",
    "demo_companies",
    "demo_people",
    "generate",
    "write_eml_dir",
    "write_mbox",
]

INBOX = "INBOX"
SENT = "Sent"
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"

# A fixed default so that output never depends on the clock.
DEFAULT_START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CRLF = b"\r\n"


# --------------------------------------------------------------------------------------------
# The cast
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    """One correspondent. `role` is "staff", "contact" or "lead"; `company` is empty for
    people writing from free-mail addresses on their own account."""

    first_name: str
    last_name: str
    email: str
    company: str = ""
    domain: str = ""
    role: str = "contact"
    language: str = "en"
    title: str = ""
    phone: str = ""
    utc_offset_minutes: int = 0
    family_name_first: bool = False

    def __post_init__(self) -> None:
        if not self.domain:
            object.__setattr__(self, "domain", self.email.rpartition("@")[2].lower())

    @property
    def name(self) -> str:
        """The display name as the person's own mail client writes it."""
        if self.family_name_first:
            sep = "" if self.language == "zh" else " "
            return f"{self.last_name}{sep}{self.first_name}"
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True, slots=True)
class Company:
    name: str
    domain: str
    website: str
    phone: str = ""
    language: str = "en"


_COMPANIES = (
    Company(
        "Acme Logistics Ltd",
        "acme-logistics.example",
        "https://www.acme-logistics.example",
        "+44 20 7946 0321",
    ),
    Company(
        "Bright Harbor Health",
        "brightharbor.example",
        "https://brightharbor.example",
        "+1 617 555 0142",
    ),
    Company(
        "Nordwind Maschinenbau GmbH",
        "nordwind-maschinenbau.example",
        "https://www.nordwind-maschinenbau.example",
        "+49 40 3019 4410",
        "de",
    ),
    Company(
        "Lefèvre & Fils",
        "lefevre-fils.example",
        "https://www.lefevre-fils.example",
        "+33 4 72 10 55 80",
        "fr",
    ),
    Company(
        "Soluciones Andinas S.A.",
        "soluciones-andinas.example",
        "https://soluciones-andinas.example",
        "+57 1 555 0190",
        "es",
    ),
    Company(
        "Sakura Denki K.K.",
        "sakura-denki.example",
        "https://www.sakura-denki.example",
        "+81 3 5555 0123",
        "ja",
    ),
    Company(
        "Volga Trade LLC",
        "volga-trade.example",
        "https://volga-trade.example",
        "+7 843 555 01 77",
        "ru",
    ),
    Company(
        "Jinqiao Trading Co., Ltd.",
        "jinqiao-trading.example",
        "https://www.jinqiao-trading.example",
        "+86 21 5555 0168",
        "zh",
    ),
)


def _p(
    first,
    last,
    email,
    company="",
    role="contact",
    lang="en",
    title="",
    phone="",
    tz=0,
    family_first=False,
) -> Person:
    return Person(first, last, email, company, "", role, lang, title, phone, tz, family_first)


_PEOPLE = (
    # Staff of the CRM's own company.
    _p(
        "Maya",
        "Chen",
        "maya.chen@relay.example",
        "Relay",
        "staff",
        "en",
        "Support Lead",
        "+44 20 7946 0100",
        0,
    ),
    _p(
        "Lukas",
        "Berger",
        "lukas.berger@relay.example",
        "Relay",
        "staff",
        "de",
        "Customer Success Manager",
        "+49 30 901820 11",
        60,
    ),
    _p(
        "Sofia",
        "Álvarez",
        "sofia.alvarez@relay.example",
        "Relay",
        "staff",
        "es",
        "Account Executive",
        "+34 91 555 0133",
        60,
    ),
    _p(
        "Daniel",
        "Okafor",
        "daniel.okafor@relay.example",
        "Relay",
        "staff",
        "en",
        "Support Engineer",
        "+44 20 7946 0102",
        0,
    ),
    # Customers.
    _p(
        "James",
        "Miller",
        "james.miller@acme-logistics.example",
        "Acme Logistics Ltd",
        title="Operations Manager",
        phone="+44 20 7946 0322",
    ),
    _p(
        "Sarah",
        "O'Connor",
        "sarah.oconnor@acme-logistics.example",
        "Acme Logistics Ltd",
        title="Accounts Payable",
        phone="+44 20 7946 0323",
    ),
    _p(
        "Tom",
        "Becker",
        "tom.becker@acme-logistics.example",
        "Acme Logistics Ltd",
        title="IT Administrator",
        phone="+44 20 7946 0324",
    ),
    _p(
        "Priya",
        "Nair",
        "priya.nair@acme-logistics.example",
        "Acme Logistics Ltd",
        title="Warehouse Lead",
        phone="+44 20 7946 0325",
    ),
    _p(
        "Emily",
        "Johnson",
        "emily.johnson@brightharbor.example",
        "Bright Harbor Health",
        title="Procurement Specialist",
        phone="+1 617 555 0143",
        tz=-300,
    ),
    _p(
        "Marcus",
        "Reed",
        "m.reed@brightharbor.example",
        "Bright Harbor Health",
        title="Chief Financial Officer",
        phone="+1 617 555 0144",
        tz=-300,
    ),
    _p(
        "Jürgen",
        "Weiß",
        "juergen.weiss@nordwind-maschinenbau.example",
        "Nordwind Maschinenbau GmbH",
        lang="de",
        title="Leiter Einkauf",
        phone="+49 40 3019 4411",
        tz=60,
    ),
    _p(
        "Anna",
        "Schäfer",
        "anna.schaefer@nordwind-maschinenbau.example",
        "Nordwind Maschinenbau GmbH",
        lang="de",
        title="Buchhaltung",
        phone="+49 40 3019 4412",
        tz=60,
    ),
    _p(
        "Matthias",
        "Köhler",
        "m.koehler@nordwind-maschinenbau.example",
        "Nordwind Maschinenbau GmbH",
        lang="de",
        title="Leiter IT",
        phone="+49 40 3019 4413",
        tz=60,
    ),
    _p(
        "Amélie",
        "Lefèvre",
        "amelie.lefevre@lefevre-fils.example",
        "Lefèvre & Fils",
        lang="fr",
        title="Directrice générale",
        phone="+33 4 72 10 55 81",
        tz=60,
    ),
    _p(
        "François",
        "Dubois",
        "f.dubois@lefevre-fils.example",
        "Lefèvre & Fils",
        lang="fr",
        title="Responsable logistique",
        phone="+33 4 72 10 55 82",
        tz=60,
    ),
    _p(
        "María José",
        "Fernández",
        "mj.fernandez@soluciones-andinas.example",
        "Soluciones Andinas S.A.",
        lang="es",
        title="Gerente de compras",
        phone="+57 1 555 0191",
        tz=-300,
    ),
    _p(
        "Andrés",
        "Peña",
        "andres.pena@soluciones-andinas.example",
        "Soluciones Andinas S.A.",
        lang="es",
        title="Soporte técnico",
        phone="+57 1 555 0192",
        tz=-300,
    ),
    _p(
        "陽菜",
        "佐藤",
        "hina.sato@sakura-denki.example",
        "Sakura Denki K.K.",
        lang="ja",
        title="購買部",
        phone="+81 3 5555 0124",
        tz=540,
        family_first=True,
    ),
    _p(
        "健太",
        "高橋",
        "k.takahashi@sakura-denki.example",
        "Sakura Denki K.K.",
        lang="ja",
        title="情報システム部",
        phone="+81 3 5555 0125",
        tz=540,
        family_first=True,
    ),
    _p(
        "Анна",
        "Смирнова",
        "a.smirnova@volga-trade.example",
        "Volga Trade LLC",
        lang="ru",
        title="Главный бухгалтер",
        phone="+7 843 555 01 78",
        tz=180,
    ),
    _p(
        "Дмитрий",
        "Иванов",
        "d.ivanov@volga-trade.example",
        "Volga Trade LLC",
        lang="ru",
        title="Менеджер по логистике",
        phone="+7 843 555 01 79",
        tz=180,
    ),
    _p(
        "芳",
        "王",
        "wang.fang@jinqiao-trading.example",
        "Jinqiao Trading Co., Ltd.",
        lang="zh",
        title="采购经理",
        phone="+86 21 5555 0169",
        tz=480,
        family_first=True,
    ),
    _p(
        "伟",
        "李",
        "li.wei@jinqiao-trading.example",
        "Jinqiao Trading Co., Ltd.",
        lang="zh",
        title="物流主管",
        phone="+86 21 5555 0170",
        tz=480,
        family_first=True,
    ),
    # Free-mail customers: never matched by domain.
    _p(
        "Olivia",
        "Bennett",
        "olivia.bennett82@gmail.com",
        title="Freelance buyer",
        phone="+44 7700 900123",
    ),
    _p("Carlos", "Ruiz", "carlos.ruiz.mx@gmail.com", lang="es", phone="+52 55 5555 0110", tz=-360),
    _p(
        "Claire", "Martin", "claire.martin@outlook.com", lang="fr", phone="+33 6 55 55 01 20", tz=60
    ),
    # Prospects not yet customers.
    _p(
        "Hannah",
        "Kowalski",
        "hannah@kowalski-design.example",
        "Kowalski Design Studio",
        "lead",
        title="Owner",
        phone="+1 312 555 0175",
        tz=-360,
    ),
    _p(
        "Pieter",
        "de Vries",
        "pieter.devries@vandijk-transport.example",
        "Van Dijk Transport B.V.",
        "lead",
        title="Fleet Manager",
        phone="+31 10 555 0188",
        tz=60,
    ),
    _p(
        "Giulia",
        "Rossi",
        "giulia.rossi@rossi-alimentari.example",
        "Rossi Alimentari S.r.l.",
        "lead",
        title="Responsabile acquisti",
        phone="+39 02 5555 0147",
        tz=60,
    ),
)


def demo_people() -> list[Person]:
    """The fixed cast of the demo data: staff at relay.example, customers at their companies'
    domains (see `demo_companies()`), a few at free-mail domains, and some leads."""
    return list(_PEOPLE)


def demo_companies() -> list[Company]:
    """The customer companies of the demo cast (the accounts, with their email domains)."""
    return list(_COMPANIES)


# --------------------------------------------------------------------------------------------
# What people write, per language. Topics are aligned across languages by index.
# --------------------------------------------------------------------------------------------

# topic -> the attachment a customer would send with it (None: usually nothing)
_TOPIC_ATTACHMENT = ("png", "png", "pdf", None, "pdf", None, "csv")


@dataclass(frozen=True, slots=True)
class _Lang:
    code: str
    charsets: tuple[tuple[str, str, int], ...]  # (charset, transfer encoding, weight)
    subjects: tuple[str, ...]
    openers: tuple[str, ...]
    fillers: tuple[str, ...]
    attach_what: tuple[str | None, ...]
    attach_sentence: str
    greetings: tuple[str, ...]
    closings: tuple[str, ...]
    staff_greeting: str
    staff_ack: str
    staff_answers: tuple[str, ...]
    staff_closing: str
    followups: tuple[str, ...]
    quote_header: str
    reply_prefixes: tuple[str, ...]
    forward_prefix: str
    auto_prefix: str
    auto_body: str
    forward_note: str
    quote_subject: str
    quote_body: str
    weekdays: tuple[str, ...]
    cities: tuple[str, ...]
    filenames: tuple[str | None, ...]
    sentence_sep: str = " "


_EN = _Lang(
    code="en",
    charsets=(("us-ascii", "7bit", 4), ("utf-8", "quoted-printable", 5), ("utf-8", "7bit", 1)),
    subjects=(
        "Delivery {order} arrived damaged",
        "Cannot log in to the customer portal",
        "Invoice {invoice} shows the wrong amount",
        "Tracking for order {order} hasn’t updated",
        "Urgent: shipment {order} stuck in customs",
        "Change of billing address",
        "Request for quote: {pallets} pallets to {city}",
    ),
    openers=(
        "Our order {order} arrived yesterday, but two of the boxes were crushed and the "
        "contents are damaged.",
        "Since this morning nobody on our team can log in to the portal; the page just reloads "
        "after entering the password.",
        "Invoice {invoice} charges us for {pallets} pallets, but our records show fewer.",
        "The tracking page hasn’t changed for three days and our customer keeps asking.",
        "Shipment {order} has been held at customs since Monday and nobody can tell us why.",
        "Our billing address has changed; please use the new one from next month on.",
        "Could you send us a quote for {pallets} pallets from Felixstowe to {city}, delivery in "
        "week {week}?",
    ),
    fillers=(
        "We need this sorted out before Friday, as the goods are for a trade fair.",
        "Please let me know if you need anything else from our side.",
        "This is the second time this month, so I would appreciate a quick answer.",
        "Thanks in advance for your help.",
    ),
    attach_what=(
        "a photo of the damage",
        "a screenshot of the error",
        "the invoice",
        None,
        "the customs documents",
        None,
        "a list of the goods",
    ),
    attach_sentence="I've attached {what}.",
    greetings=("Hello,", "Hi {staff},", "Dear Relay Support team,", "Hi team,"),
    closings=("Best regards,", "Thanks,", "Kind regards,", "Cheers,"),
    staff_greeting="Hi {first},",
    staff_ack="Thank you for getting in touch. I have opened ticket {ticket} for this and our "
    "team is on it.",
    staff_answers=(
        "I’m sorry for the trouble. Could you send us a photo of the damaged boxes and the "
        "delivery note?",
        "I’ve reset your portal access. You should receive a link within a few minutes.",
        "We have corrected the invoice; the new version will follow in a separate email.",
        "The carrier confirmed that the shipment is on its way and should arrive on {weekday}.",
        "The shipment cleared customs this morning and should arrive on {weekday}.",
        "We have updated your billing address; all future invoices will use it.",
        "Thank you for your request. You will have our quote by {weekday}.",
    ),
    staff_closing="Best regards,",
    followups=(
        "Thanks for the quick reply! Here are the details you asked for.",
        "That worked, thank you very much.",
        "Unfortunately the problem is still there. We tried again this morning.",
        "Thank you, we received everything. You can close the ticket.",
        "One more question: can we also change the delivery address for the next order?",
    ),
    quote_header="On {date}, {name} <{email}> wrote:",
    reply_prefixes=("Re: ", "RE: "),
    forward_prefix="Fwd: ",
    auto_prefix="Automatic reply: ",
    auto_body="Thank you for your email. I am out of the office until {date} with limited "
    "access to email. For urgent matters please contact {colleague}.",
    forward_note="Please see the message below from our carrier. Can you check this?",
    quote_subject="Your quote: {pallets} pallets to {city}",
    quote_body="As discussed, please find attached our quote for {pallets} pallets to {city}. "
    "The offer is valid for 30 days.",
    weekdays=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"),
    cities=("Rotterdam", "Hamburg", "Lyon", "Milan", "Gdańsk"),
    filenames=(
        "IMG_{n}.png",
        "screenshot.png",
        "{invoice}.pdf",
        None,
        "customs_declaration.pdf",
        None,
        "goods_list.csv",
    ),
)

_DE = _Lang(
    code="de",
    charsets=(
        ("utf-8", "quoted-printable", 45),
        ("iso-8859-1", "quoted-printable", 35),
        ("utf-8", "8bit", 10),
        ("iso-8859-15", "quoted-printable", 10),
    ),
    subjects=(
        "Lieferung {order} beschädigt angekommen",
        "Anmeldung im Kundenportal nicht möglich",
        "Rechnung {invoice}: falscher Betrag",
        "Sendungsverfolgung für Auftrag {order} aktualisiert sich nicht",
        "Dringend: Sendung {order} hängt beim Zoll fest",
        "Änderung unserer Rechnungsadresse",
        "Angebotsanfrage: {pallets} Paletten nach {city}",
    ),
    openers=(
        "Unsere Bestellung {order} ist gestern angekommen, aber zwei Kartons waren eingedrückt "
        "und die Ware ist beschädigt.",
        "Seit heute Morgen kann sich niemand aus unserem Team im Portal anmelden; die Seite "
        "lädt nach der Passworteingabe einfach neu.",
        "Auf der Rechnung {invoice} werden {pallets} Paletten berechnet, laut unseren "
        "Unterlagen waren es weniger.",
        "Die Sendungsverfolgung zeigt seit drei Tagen denselben Status, und unser Kunde fragt "
        "täglich nach.",
        "Die Sendung {order} liegt seit Montag beim Zoll, und niemand kann uns den Grund nennen.",
        "Unsere Rechnungsadresse hat sich geändert: Bitte verwenden Sie ab nächstem Monat die "
        "neue Anschrift.",
        "Könnten Sie uns ein Angebot für {pallets} Paletten von Hamburg nach {city} schicken, "
        "Lieferung in KW {week}?",
    ),
    fillers=(
        "Wir bräuchten eine Lösung bis Freitag, da die Ware für eine Messe bestimmt ist.",
        "Für Rückfragen stehe ich Ihnen gerne zur Verfügung.",
        "Das ist bereits das zweite Mal in diesem Monat, daher wäre eine schnelle Antwort schön.",
        "Vielen Dank im Voraus für Ihre Unterstützung.",
    ),
    attach_what=(
        "ein Foto der Schäden",
        "einen Screenshot der Fehlermeldung",
        "die Rechnung",
        None,
        "die Zollpapiere",
        None,
        "eine Liste der Waren",
    ),
    attach_sentence="Im Anhang finden Sie {what}.",
    greetings=("Sehr geehrte Damen und Herren,", "Hallo {staff},", "Guten Tag,", "Hallo zusammen,"),
    closings=("Mit freundlichen Grüßen", "Viele Grüße", "Beste Grüße"),
    staff_greeting="Hallo {first},",
    staff_ack="Vielen Dank für Ihre Nachricht. Ich habe dazu das Ticket {ticket} angelegt, "
    "unser Team kümmert sich darum.",
    staff_answers=(
        "Das tut mir leid. Könnten Sie uns ein Foto der beschädigten Kartons und den "
        "Lieferschein schicken?",
        "Ich habe Ihren Portalzugang zurückgesetzt. Sie erhalten in wenigen Minuten einen Link.",
        "Wir haben die Rechnung korrigiert; die neue Fassung erhalten Sie in einer separaten "
        "E-Mail.",
        "Der Spediteur hat bestätigt, dass die Sendung unterwegs ist; sie sollte am {weekday} "
        "ankommen.",
        "Die Sendung wurde heute Morgen vom Zoll freigegeben und sollte am {weekday} ankommen.",
        "Wir haben Ihre Rechnungsadresse geändert; alle künftigen Rechnungen gehen an die neue "
        "Anschrift.",
        "Vielen Dank für Ihre Anfrage. Sie erhalten unser Angebot bis {weekday}.",
    ),
    staff_closing="Viele Grüße",
    followups=(
        "Danke für die schnelle Antwort! Anbei die gewünschten Angaben.",
        "Hat funktioniert, vielen Dank.",
        "Leider besteht das Problem weiterhin. Wir haben es heute früh noch einmal versucht.",
        "Danke, wir haben alles erhalten. Das Ticket kann geschlossen werden.",
        "Noch eine Frage: Können wir für die nächste Bestellung auch die Lieferadresse ändern?",
    ),
    quote_header="Am {date} schrieb {name} <{email}>:",
    reply_prefixes=("AW: ", "Re: "),
    forward_prefix="WG: ",
    auto_prefix="Automatische Antwort: ",
    auto_body="Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich {date} nicht im Büro "
    "und habe nur eingeschränkt Zugriff auf meine E-Mails. In dringenden Fällen wenden Sie sich "
    "bitte an {colleague}.",
    forward_note="Bitte beachten Sie die Nachricht unseres Spediteurs unten. Können Sie das "
    "prüfen?",
    quote_subject="Ihr Angebot: {pallets} Paletten nach {city}",
    quote_body="Wie besprochen erhalten Sie anbei unser Angebot für {pallets} Paletten nach "
    "{city}. Das Angebot ist 30 Tage gültig.",
    weekdays=("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag"),
    cities=("Wien", "Zürich", "München", "Köln", "Graz"),
    filenames=(
        "IMG_{n}.png",
        "Bildschirmfoto Fehlermeldung.png",
        "Rechnung_{invoice}.pdf",
        None,
        "Zollanmeldung_Ausfuhr.pdf",
        None,
        "Warenübersicht.csv",
    ),
)

_FR = _Lang(
    code="fr",
    charsets=(
        ("utf-8", "quoted-printable", 50),
        ("iso-8859-1", "quoted-printable", 25),
        ("windows-1252", "quoted-printable", 25),
    ),
    subjects=(
        "Livraison {order} arrivée endommagée",
        "Impossible de me connecter au portail client",
        "Facture {invoice} : montant erroné",
        "Suivi de la commande {order} bloqué",
        "Urgent : envoi {order} retenu en douane",
        "Changement d'adresse de facturation",
        "Demande de devis : {pallets} palettes pour {city}",
    ),
    openers=(
        "Notre commande {order} est arrivée hier, mais deux cartons étaient écrasés et la "
        "marchandise est abîmée.",
        "Depuis ce matin, personne dans notre équipe ne peut se connecter au portail : la page "
        "se recharge après la saisie du mot de passe.",
        "La facture {invoice} nous compte {pallets} palettes, alors que nous en avons expédié "
        "moins.",
        "Le suivi n’a pas changé depuis trois jours et notre client s’impatiente.",
        "L'envoi {order} est bloqué en douane depuis lundi et personne ne sait nous dire pourquoi.",
        "Notre adresse de facturation a changé : merci d'utiliser la nouvelle à partir du mois "
        "prochain.",
        "Pourriez-vous nous envoyer un devis pour {pallets} palettes du Havre à {city}, "
        "livraison semaine {week} ?",
    ),
    fillers=(
        "Nous aurions besoin d'une solution avant vendredi, la marchandise est destinée à un "
        "salon.",
        "Je reste à votre disposition pour toute information complémentaire.",
        "C'est déjà la deuxième fois ce mois-ci, une réponse rapide serait appréciée.",
        "Merci d'avance pour votre aide.",
    ),
    attach_what=(
        "une photo des dégâts",
        "une capture d'écran de l'erreur",
        "la facture",
        None,
        "les documents de douane",
        None,
        "la liste des marchandises",
    ),
    attach_sentence="Vous trouverez ci-joint {what}.",
    greetings=("Bonjour,", "Bonjour {staff},", "Madame, Monsieur,"),
    closings=("Cordialement,", "Bien à vous,", "Bonne journée,"),
    staff_greeting="Bonjour {first},",
    staff_ack="Merci pour votre message. J'ai ouvert le ticket {ticket} et notre équipe s'en "
    "occupe.",
    staff_answers=(
        "Toutes nos excuses pour ce désagrément. Pourriez-vous nous envoyer une photo des "
        "cartons abîmés et le bon de livraison ?",
        "J'ai réinitialisé votre accès au portail. Vous recevrez un lien d'ici quelques minutes.",
        "Nous avons corrigé la facture ; vous recevrez la nouvelle version dans un e-mail séparé.",
        "Le transporteur confirme que l'envoi est en route ; il devrait arriver {weekday}.",
        "L'envoi a été dédouané ce matin et devrait arriver {weekday}.",
        "Nous avons mis à jour votre adresse de facturation pour toutes les prochaines factures.",
        "Merci pour votre demande. Vous recevrez notre devis d'ici {weekday}.",
    ),
    staff_closing="Cordialement,",
    followups=(
        "Merci pour votre réponse rapide ! Voici les informations demandées.",
        "Ça fonctionne, merci beaucoup.",
        "Malheureusement, le problème persiste. Nous avons réessayé ce matin.",
        "Merci, nous avons tout reçu. Vous pouvez clôturer le ticket.",
        "Encore une question : pouvons-nous aussi changer l'adresse de livraison de la "
        "prochaine commande ?",
    ),
    quote_header="Le {date}, {name} <{email}> a écrit :",
    reply_prefixes=("RE : ", "Re: "),
    forward_prefix="TR : ",
    auto_prefix="Réponse automatique : ",
    auto_body="Merci pour votre message. Je suis en congé jusqu'au {date} inclus, avec un accès "
    "limité à mes e-mails. Pour toute urgence, merci de contacter {colleague}.",
    forward_note="Voici le message de notre transporteur ci-dessous. Pouvez-vous vérifier ?",
    quote_subject="Votre devis : {pallets} palettes pour {city}",
    quote_body="Comme convenu, veuillez trouver ci-joint notre devis pour {pallets} palettes à "
    "destination de {city}. L'offre est valable 30 jours.",
    weekdays=("lundi", "mardi", "mercredi", "jeudi", "vendredi"),
    cities=("Bruxelles", "Genève", "Marseille", "Québec"),
    filenames=(
        "IMG_{n}.png",
        "capture d'écran.png",
        "Facture_{invoice}.pdf",
        None,
        "déclaration_douane.pdf",
        None,
        "liste_marchandises.csv",
    ),
)

_ES = _Lang(
    code="es",
    charsets=(
        ("iso-8859-1", "quoted-printable", 35),
        ("utf-8", "base64", 35),
        ("utf-8", "quoted-printable", 30),
    ),
    subjects=(
        "Entrega {order} llegó dañada",
        "No puedo acceder al portal de clientes",
        "Factura {invoice} con importe incorrecto",
        "El seguimiento del pedido {order} no se actualiza",
        "Urgente: envío {order} retenido en aduana",
        "Cambio de dirección de facturación",
        "Solicitud de cotización: {pallets} palés a {city}",
    ),
    openers=(
        "Nuestro pedido {order} llegó ayer, pero dos cajas estaban aplastadas y la mercancía "
        "está dañada.",
        "Desde esta mañana nadie de nuestro equipo puede entrar en el portal; la página se "
        "recarga al introducir la contraseña.",
        "En la factura {invoice} nos cobran {pallets} palés, pero según nuestros registros "
        "enviamos menos.",
        "El seguimiento no ha cambiado en tres días y nuestro cliente pregunta a diario.",
        "El envío {order} está retenido en la aduana desde el lunes y nadie nos explica el motivo.",
        "Nuestra dirección de facturación ha cambiado; por favor, usen la nueva a partir del "
        "mes que viene.",
        "¿Podrían enviarnos una cotización para {pallets} palés de Valencia a {city}, con "
        "entrega en la semana {week}?",
    ),
    fillers=(
        "Necesitamos una solución antes del viernes, ya que la mercancía es para una feria.",
        "Quedo atento a su respuesta.",
        "Es la segunda vez este mes, así que agradecería una respuesta rápida.",
        "Muchas gracias de antemano por su ayuda.",
    ),
    attach_what=(
        "una foto de los daños",
        "una captura de pantalla del error",
        "la factura",
        None,
        "los documentos de aduana",
        None,
        "la lista de mercancías",
    ),
    attach_sentence="Adjunto {what}.",
    greetings=("Hola,", "Buenos días,", "Estimado equipo de soporte:", "Hola, {staff}:"),
    closings=("Saludos cordiales,", "Un saludo,", "Atentamente,"),
    staff_greeting="Hola, {first}:",
    staff_ack="Gracias por escribirnos. He abierto el ticket {ticket} y nuestro equipo ya lo "
    "está revisando.",
    staff_answers=(
        "Lamentamos las molestias. ¿Podría enviarnos una foto de las cajas dañadas y el albarán?",
        "He restablecido su acceso al portal. Recibirá un enlace en unos minutos.",
        "Hemos corregido la factura; recibirá la nueva versión en un correo aparte.",
        "El transportista confirma que el envío está en camino y debería llegar el {weekday}.",
        "El envío salió de la aduana esta mañana y debería llegar el {weekday}.",
        "Hemos actualizado su dirección de facturación para todas las próximas facturas.",
        "Gracias por su solicitud. Recibirá nuestra cotización el {weekday}.",
    ),
    staff_closing="Un saludo,",
    followups=(
        "¡Gracias por la rápida respuesta! Aquí tienen los datos que pidieron.",
        "Ya funciona, muchas gracias.",
        "Lamentablemente el problema continúa. Lo intentamos de nuevo esta mañana.",
        "Gracias, lo hemos recibido todo. Pueden cerrar el ticket.",
        "Una pregunta más: ¿podemos cambiar también la dirección de entrega del próximo pedido?",
    ),
    quote_header="El {date}, {name} <{email}> escribió:",
    reply_prefixes=("RE: ", "Re: "),
    forward_prefix="RV: ",
    auto_prefix="Respuesta automática: ",
    auto_body="Gracias por su mensaje. Estaré fuera de la oficina hasta el {date}, con acceso "
    "limitado al correo. Para asuntos urgentes, contacte con {colleague}.",
    forward_note="Les reenvío el mensaje de nuestro transportista. ¿Pueden revisarlo?",
    quote_subject="Su cotización: {pallets} palés a {city}",
    quote_body="Como acordamos, adjunto nuestra cotización para {pallets} palés con destino a "
    "{city}. La oferta es válida durante 30 días.",
    weekdays=("lunes", "martes", "miércoles", "jueves", "viernes"),
    cities=("Bogotá", "Lima", "Medellín", "Málaga"),
    filenames=(
        "IMG_{n}.png",
        "captura de pantalla.png",
        "Factura_{invoice}.pdf",
        None,
        "declaración_aduana.pdf",
        None,
        "lista_mercancías.csv",
    ),
)

_JA = _Lang(
    code="ja",
    charsets=(("iso-2022-jp", "7bit", 55), ("utf-8", "base64", 45)),
    subjects=(
        "納品物の破損について（注文番号 {order}）",
        "カスタマーポータルにログインできません",
        "請求書 {invoice} の金額について",
        "注文 {order} の配送状況が更新されません",
        "至急：{order} の貨物が税関で止まっています",
        "請求先住所変更のお願い",
        "お見積りのお願い：{city}向け {pallets} パレット",
    ),
    openers=(
        "昨日、注文 {order} の商品が届きましたが、箱が二つ潰れており、中身が破損していました。",
        "今朝から弊社の誰もポータルにログインできません。パスワードを入力すると、ページが再読み込み"
        "されるだけです。",
        "請求書 {invoice} では {pallets} パレット分が請求されていますが、"
        "弊社の記録では数が異なります。",
        "追跡ページの状況が三日間変わっておらず、お客様から問い合わせが来ています。",
        "貨物 {order} が月曜日から税関で止まっており、理由が分かりません。",
        "請求先の住所が変わりましたので、来月から新しい住所をご使用ください。",
        "横浜から{city}まで {pallets} パレットのお見積りをいただけますでしょうか。"
        "納期は第{week}週を希望します。",
    ),
    fillers=(
        "展示会用の商品のため、金曜日までに解決していただけますと幸いです。",
        "ご確認のほど、よろしくお願いいたします。",
        "今月二回目のため、早めのご回答をお願いできますでしょうか。",
    ),
    attach_what=(
        "破損箇所の写真",
        "エラー画面のスクリーンショット",
        "請求書",
        None,
        "通関書類",
        None,
        "品目リスト",
    ),
    attach_sentence="{what}を添付いたします。",
    greetings=("お世話になっております。", "Relay サポートご担当者様", "{staff}様"),
    closings=("よろしくお願いいたします。",),
    staff_greeting="{last}様",
    staff_ack="お問い合わせいただきありがとうございます。チケット {ticket} を作成し、担当チームが"
    "対応しております。",
    staff_answers=(
        "ご迷惑をおかけして申し訳ございません。破損した箱の写真と納品書をお送りいただけますでしょうか。",
        "ポータルのアクセスをリセットいたしました。数分以内にリンクが届きます。",
        "請求書を訂正いたしました。新しい請求書は別のメールでお送りします。",
        "運送会社によると貨物は輸送中で、{weekday}に到着する予定です。",
        "貨物は今朝通関し、{weekday}に到着する予定です。",
        "請求先住所を更新いたしました。今後の請求書は新しい住所宛てになります。",
        "お見積りのご依頼ありがとうございます。{weekday}までにお送りいたします。",
    ),
    staff_closing="よろしくお願いいたします。",
    followups=(
        "早速のご返信ありがとうございます。ご依頼の情報をお送りします。",
        "問題が解決しました。ありがとうございました。",
        "残念ながら、問題はまだ解決していません。今朝もう一度試しました。",
        "すべて受け取りました。チケットをクローズしていただいて結構です。",
        "もう一つ質問です。次回の注文の配送先も変更できますか。",
    ),
    quote_header="{date}、{name} <{email}> さんは書きました:",
    reply_prefixes=("Re: ", "RE: "),
    forward_prefix="転送: ",
    auto_prefix="自動応答: ",
    auto_body="メールありがとうございます。{date}まで不在のため、メールの確認が遅れます。"
    "お急ぎの場合は{colleague}までご連絡ください。",
    forward_note="運送会社からのメールを転送します。ご確認いただけますでしょうか。",
    quote_subject="お見積書：{city}向け {pallets} パレット",
    quote_body="先日お話しした件につき、{city}向け {pallets} パレットのお見積書を添付いたします。"
    "有効期限は30日間です。",
    weekdays=("月曜日", "火曜日", "水曜日", "木曜日", "金曜日"),
    cities=("大阪", "名古屋", "福岡", "札幌"),
    filenames=(
        "IMG_{n}.png",
        "スクリーンショット.png",
        "請求書_{invoice}.pdf",
        None,
        "通関書類.pdf",
        None,
        "品目リスト.csv",
    ),
    sentence_sep="",
)

_RU = _Lang(
    code="ru",
    charsets=(
        ("koi8-r", "8bit", 35),
        ("koi8-r", "base64", 15),
        ("utf-8", "base64", 35),
        ("windows-1251", "quoted-printable", 15),
    ),
    subjects=(
        "Груз по заказу {order} пришел поврежденным",
        "Не могу войти в личный кабинет",
        "Неверная сумма в счете {invoice}",
        "Не обновляется отслеживание заказа {order}",
        "Срочно: груз {order} задержан на таможне",
        "Изменение платежного адреса",
        "Запрос цены: {pallets} паллет в {city}",
    ),
    openers=(
        "Наш заказ {order} пришел вчера, но две коробки были смяты, и товар поврежден.",
        "С сегодняшнего утра никто из нашей команды не может войти в личный кабинет: после "
        "ввода пароля страница просто перезагружается.",
        "В счете {invoice} указано {pallets} паллет, но по нашим данным их было меньше.",
        "Статус отслеживания не меняется уже три дня, и наш клиент каждый день спрашивает о "
        "сроках.",
        "Груз {order} с понедельника стоит на таможне, и никто не может объяснить причину.",
        "У нас изменился платежный адрес: пожалуйста, используйте новый со следующего месяца.",
        "Пожалуйста, пришлите расчет стоимости перевозки {pallets} паллет из Санкт-Петербурга в "
        "{city}, доставка на {week}-й неделе.",
    ),
    fillers=(
        "Нам нужно решить вопрос до пятницы, так как товар предназначен для выставки.",
        "Заранее спасибо за ответ.",
        "Это уже второй раз в этом месяце, поэтому просим ответить как можно скорее.",
    ),
    attach_what=(
        "фотография повреждений",
        "снимок экрана с ошибкой",
        "счет",
        None,
        "таможенные документы",
        None,
        "список товаров",
    ),
    attach_sentence="Во вложении {what}.",
    greetings=("Здравствуйте!", "Добрый день!", "Здравствуйте, {staff}!"),
    closings=("С уважением,", "Спасибо,"),
    staff_greeting="Здравствуйте, {first}!",
    staff_ack="Спасибо за обращение. Мы создали заявку {ticket}, наша команда уже занимается ею.",
    staff_answers=(
        "Приносим извинения за неудобства. Не могли бы вы прислать фотографию поврежденных "
        "коробок и накладную?",
        "Мы сбросили доступ к личному кабинету. Ссылка придет в течение нескольких минут.",
        "Мы исправили счет; новую версию вы получите отдельным письмом.",
        "Перевозчик подтвердил, что груз в пути и должен прибыть {weekday}.",
        "Груз прошел таможню сегодня утром и должен прибыть {weekday}.",
        "Мы обновили ваш платежный адрес для всех следующих счетов.",
        "Спасибо за запрос. Мы пришлем расчет {weekday}.",
    ),
    staff_closing="С уважением,",
    followups=(
        "Спасибо за быстрый ответ! Высылаю запрошенные данные.",
        "Все заработало, большое спасибо.",
        "К сожалению, проблема сохраняется. Мы попробовали еще раз сегодня утром.",
        "Спасибо, все получили. Заявку можно закрыть.",
        "Еще один вопрос: можно ли изменить адрес доставки для следующего заказа?",
    ),
    quote_header="{date}, {name} <{email}> пишет:",
    reply_prefixes=("Re: ", "RE: "),
    forward_prefix="Fwd: ",
    auto_prefix="Автоматический ответ: ",
    auto_body="Спасибо за письмо. Я в отпуске до {date} и редко проверяю почту. По срочным "
    "вопросам: {colleague}.",
    forward_note="Пересылаю письмо нашего перевозчика. Проверьте, пожалуйста.",
    quote_subject="Коммерческое предложение: {pallets} паллет в {city}",
    quote_body="Как договаривались, направляем расчет стоимости перевозки {pallets} паллет в "
    "{city}. Предложение действительно 30 дней.",
    weekdays=("в понедельник", "во вторник", "в среду", "в четверг", "в пятницу"),
    cities=("Москву", "Казань", "Новосибирск", "Самару"),
    filenames=(
        "IMG_{n}.png",
        "Снимок экрана.png",
        "Счет_{invoice}.pdf",
        None,
        "Таможенная декларация.pdf",
        None,
        "Список товаров.csv",
    ),
)

_ZH = _Lang(
    code="zh",
    charsets=(("gb2312", "base64", 40), ("gb18030", "base64", 25), ("utf-8", "base64", 35)),
    subjects=(
        "订单 {order} 的货物到货时已损坏",
        "无法登录客户门户",
        "发票 {invoice} 金额有误",
        "订单 {order} 的物流信息没有更新",
        "紧急：货物 {order} 被海关扣留",
        "变更开票地址",
        "询价：{pallets} 个托盘发往{city}",
    ),
    openers=(
        "我们的订单 {order} 昨天到货，但是有两个箱子被压坏，货物受损。",
        "从今天早上开始，我们团队的所有人都无法登录门户，输入密码后页面只是重新加载。",
        "发票 {invoice} 按 {pallets} 个托盘收费，但根据我们的记录数量更少。",
        "物流跟踪信息已经三天没有变化，客户每天都在询问。",
        "货物 {order} 从周一起一直被海关扣留，没有人能告诉我们原因。",
        "我们的开票地址已经变更，请从下个月开始使用新地址。",
        "请提供从上海到{city}的 {pallets} 个托盘的报价，希望第 {week} 周交货。",
    ),
    fillers=(
        "货物是为展会准备的，我们需要在周五之前解决这个问题。",
        "如需更多信息，请随时与我联系。",
        "这已经是本月第二次了，希望尽快答复。",
    ),
    attach_what=("损坏情况的照片", "错误信息的截图", "发票", None, "报关单据", None, "货物清单"),
    attach_sentence="附件是{what}。",
    greetings=("您好！", "{staff}，您好！", "尊敬的客服团队："),
    closings=("谢谢！", "祝好，"),
    staff_greeting="{first}，您好！",
    staff_ack="感谢您的来信。我们已经创建工单 {ticket}，团队正在处理。",
    staff_answers=(
        "非常抱歉给您带来不便。能否请您发送损坏箱子的照片和送货单？",
        "我们已经重置了您的门户账户，几分钟内您会收到一个链接。",
        "我们已经更正了发票，新版本将另行发送。",
        "承运商确认货物正在运输途中，预计{weekday}到达。",
        "货物已于今天早上清关，预计{weekday}到达。",
        "我们已经更新了您的开票地址，以后的发票都会使用新地址。",
        "感谢您的询价，我们会在{weekday}之前发送报价。",
    ),
    staff_closing="祝好，",
    followups=(
        "感谢您的快速回复！这是您需要的信息。",
        "问题已经解决了，非常感谢。",
        "很遗憾，问题仍然存在。我们今天早上又试了一次。",
        "谢谢，我们已经全部收到，工单可以关闭了。",
        "还有一个问题：下一个订单的收货地址也可以更改吗？",
    ),
    quote_header="在 {date}，{name} <{email}> 写道：",
    reply_prefixes=("回复：", "Re: "),
    forward_prefix="转发：",
    auto_prefix="自动回复：",
    auto_body="感谢您的来信。我在 {date} 之前休假，查看邮件会有延迟。"
    "如有急事，请联系 {colleague}。",
    forward_note="转发承运商的邮件，请帮忙核实。",
    quote_subject="报价单：{pallets} 个托盘发往{city}",
    quote_body="如前所述，附件是发往{city}的 {pallets} 个托盘的报价单。报价有效期为 30 天。",
    weekdays=("周一", "周二", "周三", "周四", "周五"),
    cities=("北京", "广州", "深圳", "成都"),
    filenames=(
        "IMG_{n}.png",
        "截图.png",
        "发票_{invoice}.pdf",
        None,
        "报关单.pdf",
        None,
        "货物清单.csv",
    ),
    sentence_sep="",
)

LANGUAGES: dict[str, _Lang] = {lang.code: lang for lang in (_EN, _DE, _FR, _ES, _JA, _RU, _ZH)}

# Names for senders the CRM does not know yet: (first, last, local part, language).
_UNKNOWN_NAMES = (
    ("Hannah", "Kowalczyk", "h.kowalczyk", "en"),
    ("Oliver", "Grant", "oliver.grant", "en"),
    ("Chloe", "Adams", "chloe", "en"),
    ("Noah", "Fischer", "noah.fischer", "en"),
    ("Lena", "Hoffmann", "lena.hoffmann", "de"),
    ("Björn", "Müller", "bjoern.mueller", "de"),
    ("Camille", "Rousseau", "c.rousseau", "fr"),
    ("Lucía", "Romero", "lucia.romero", "es"),
    ("Mateo", "García", "mgarcia", "es"),
    ("翔太", "山本", "shota.yamamoto", "ja"),
    ("Ольга", "Кузнецова", "o.kuznetsova", "ru"),
    ("静", "张", "zhang.jing", "zh"),
)
_UNKNOWN_DOMAINS = (
    "northwind-traders.example",
    "bluepeak-supply.example",
    "hafen-spedition.example",
    "atelier-moreau.example",
    "grupo-sierra.example",
    "tanaka-shoji.example",
    "ural-metall.example",
    "huaxin-electronics.example",
)
_FREEMAIL = {
    "en": ("gmail.com", "outlook.com", "yahoo.com"),
    "de": ("web.de", "gmx.de"),
    "fr": ("orange.fr", "free.fr"),
    "es": ("hotmail.es", "gmail.com"),
    "ja": ("yahoo.co.jp",),
    "ru": ("mail.ru", "yandex.ru"),
    "zh": ("qq.com", "163.com"),
}

_LIST_SUBJECTS = (
    "How do you handle shared mailboxes with several teams?",
    "IMAP IDLE vs polling for large folders",
    "Release 2.4 is out",
    "Filing rules for free-mail senders",
    "Migrating from django-mailbox",
    "Anyone seeing duplicates after a UIDVALIDITY change?",
    "Best practice for signatures in shared mailboxes",
)
_LIST_OPENERS = (
    "We run three shared mailboxes for support, sales and billing, and I wonder how others "
    "split the permissions between teams.",
    "Our archive folder has about 80,000 messages and the first sync takes a while. Does IDLE "
    "help here or is polling every few minutes good enough?",
    "Release 2.4 brings CONDSTORE support, faster first syncs and a new triage queue. Upgrade "
    "notes are in the changelog.",
    "Mail from gmail.com addresses never gets filed on the right account for us. Is there a way "
    "to map individual free-mail addresses to a company?",
    "We are moving from django-mailbox and would like to keep the old message history. Has "
    "anyone imported an mbox export successfully?",
    "After our provider migrated servers, UIDVALIDITY changed on every folder. Did anyone else "
    "end up with duplicate messages?",
    "Should the signature live on the mailbox or on the user when several people answer from "
    "the same shared address?",
)
_LIST_REPLIES = (
    "+1, we see the same on our side.",
    "We ended up polling every two minutes; IDLE kept dropping behind our proxy.",
    "Have a look at the exclusion patterns in the mailbox settings, they solved it for us.",
    "Thanks, that was exactly what I needed.",
    "Same here. Opened an issue with the logs attached.",
    "It worked fine for us with the mbox importer, 40k messages in about a minute.",
)
_LIST_PEOPLE = (
    ("Ravi Kumar", "ravi@kumar-consulting.example"),
    ("Ingrid Larsen", "ingrid.larsen@fjord-it.example"),
    ("Tomás Silva", "tomas@silva.example"),
    ("Grace Liu", "grace.liu@northwind-traders.example"),
    ("Peter Novak", "pnovak@novak-systems.example"),
)

_NEWS_ARTICLES = {
    "en": (
        (
            "Port congestion eases in Rotterdam",
            "Waiting times for container vessels fell to 1.8 days in October, the lowest this "
            "year.",
        ),
        (
            "New EU customs rules from January",
            "Importers need to file the new ICS2 entry summary for all road shipments.",
        ),
        (
            "Five ways to cut empty miles",
            "Shared loads and smarter routing saved our readers up to 12% of their fuel costs.",
        ),
        (
            "Webinar: warehouse automation on a budget",
            "Join us on Thursday at 3 pm CET for a live session with three practitioners.",
        ),
    ),
    "de": (
        (
            "Staus im Hamburger Hafen nehmen ab",
            "Die Wartezeiten für Containerschiffe sind im Oktober auf 1,8 Tage gesunken.",
        ),
        (
            "Neue Zollregeln ab Januar",
            "Importeure müssen künftig für alle Straßentransporte eine ICS2-Anmeldung abgeben.",
        ),
        (
            "Fünf Wege zu weniger Leerfahrten",
            "Geteilte Ladungen und bessere Routen sparen bis zu 12 % der Treibstoffkosten.",
        ),
        (
            "Webinar: Lagerautomatisierung mit kleinem Budget",
            "Am Donnerstag um 15 Uhr mit drei Praktikern aus mittelständischen Betrieben.",
        ),
    ),
}


# --------------------------------------------------------------------------------------------
# Byte builders: images, PDFs, CSV
# --------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _png(width: int, height: int, rows: bytes, level: int = 9) -> bytes:
    """A valid RGB PNG from `rows` (each row: filter byte 0 then width*3 bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, level))
        + _png_chunk(b"IEND", b"")
    )


def _solid_png(width: int, height: int, top: bytes, bottom: bytes) -> bytes:
    half = height // 2
    rows = (b"\x00" + top * width) * half + (b"\x00" + bottom * width) * (height - half)
    return _png(width, height, rows)


def _noise_png(rng: random.Random, size: int) -> bytes:
    """An image of about `size` bytes (noise does not compress, so size ~ pixels * 3)."""
    width = 320
    row_len = width * 3 + 1
    height = max(1, size // row_len)
    pixels = rng.randbytes(height * width * 3)
    rows = b"".join(b"\x00" + pixels[y * width * 3 : (y + 1) * width * 3] for y in range(height))
    return _png(width, height, rows, level=0)


# Tiny inline images shared by newsletters and signatures (same bytes: stored once by hash).
_LOGO_PNG = _solid_png(32, 32, b"\x1f\x4e\x8c", b"\xf2\xa9\x00")
_BANNER_PNG = _solid_png(120, 40, b"\x0b\x6e\x4f", b"\xff\xff\xff")
_SIGNATURE_PNG = _solid_png(48, 16, b"\xc0\x39\x2b", b"\x2c\x3e\x50")


def _pdf_escape(text: str) -> bytes:
    data = text.encode("ascii", "replace")
    return data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _pdf(rng: random.Random, lines: list[str], size: int) -> bytes:
    """A valid one-page PDF showing `lines`, padded to about `size` bytes with an unreferenced
    binary stream (as scanned documents and embedded fonts are)."""
    ops = [b"BT /F1 16 Tf 72 770 Td (" + _pdf_escape(lines[0]) + b") Tj /F1 11 Tf"]
    for line in lines[1:]:
        ops.append(b"0 -18 Td (" + _pdf_escape(line) + b") Tj")
    ops.append(b"ET")
    content = b"\n".join(ops)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    padding = size - 900 - len(content)
    if padding > 0:
        objects.append(
            b"<< /Length %d >>\nstream\n" % padding + rng.randbytes(padding) + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


_CSV_ITEMS = {
    "en": ("Pallet racking", "Stretch film", "Corner boards", "Labels", "Cable ties"),
    "de": ("Palettenregal", "Stretchfolie", "Kantenschutz", "Etiketten", "Kabelbinder"),
    "fr": ("Rayonnage", "Film étirable", "Cornières", "Étiquettes", "Colliers"),
    "es": ("Estantería", "Film estirable", "Cantoneras", "Etiquetas", "Bridas"),
    "ja": ("パレットラック", "ストレッチフィルム", "コーナーガード", "ラベル", "結束バンド"),
    "ru": ("Стеллаж", "Стрейч-пленка", "Уголки", "Этикетки", "Стяжки"),
    "zh": ("货架", "缠绕膜", "护角", "标签", "扎带"),
}


def _csv(rng: random.Random, language: str, size: int) -> bytes:
    """A CSV export as the customer's spreadsheet writes it (semicolons and decimal commas in
    Europe, a UTF-8 byte order mark from Excel)."""
    european = language in ("de", "fr", "es", "ru")
    sep = ";" if european else ","
    items = _CSV_ITEMS[language]
    header = sep.join(("sku", "description", "quantity", "weight_kg", "unit_price"))
    lines = [header]
    total = len(header)
    row = 0
    while total < size:
        row += 1
        bits = rng.getrandbits(48)  # one draw per row: large exports stay fast
        weight = f"{(bits & 0x3FFF) % 9999 / 10 + 0.1:.1f}"
        price = f"{(bits >> 14 & 0x1FFFF) % 99900 / 100 + 1:.2f}"
        if european:
            weight, price = weight.replace(".", ","), price.replace(".", ",")
        quantity = (bits >> 31) % 400 + 1
        fields = (f"SKU-{10000 + row}", items[row % len(items)], str(quantity), weight, price)
        line = sep.join(fields)
        lines.append(line)
        total += len(line) * (1 if language in ("en", "de", "fr", "es") else 2) + 2
    return b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"


# --------------------------------------------------------------------------------------------
# MIME text helpers
# --------------------------------------------------------------------------------------------

_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_SPECIALS = frozenset('()<>@,;:\\".[]')
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _q_encode(data: bytes) -> str:
    return "".join("_" if b == 0x20 else chr(b) if b in _Q_SAFE else f"={b:02X}" for b in data)


def _encoded_words(text: str, charset: str) -> list[str]:
    """RFC 2047 encoded words of at most 75 characters, never splitting a character (and, for
    ISO-2022-JP, each word encoded on its own so that it starts and ends in ASCII)."""
    latin = charset.startswith(("iso-8859", "windows-125", "us-ascii")) and charset not in (
        "iso-8859-5",
        "windows-1251",
    )
    mode = "Q" if latin or charset == "utf-8" and _mostly_ascii(text) else "B"
    prefix = f"=?{charset}?{mode}?"
    budget = 75 - len(prefix) - 2
    words: list[str] = []
    chunk: list[str] = []
    used = 0
    stateful = charset == "iso-2022-jp"
    for ch in text:
        if mode == "Q":
            cost = len(_q_encode(ch.encode(charset)))
        else:
            cost = 3 if stateful and not ch.isascii() else len(ch.encode(charset))
        estimate = used + cost
        if mode == "B":
            estimate = 4 * ((estimate + (8 if stateful else 0) + 2) // 3)
        if chunk and estimate > budget:
            words.append(_encode_chunk("".join(chunk), charset, mode, prefix))
            chunk, used = [], 0
        chunk.append(ch)
        used += cost
    if chunk:
        words.append(_encode_chunk("".join(chunk), charset, mode, prefix))
    return words


def _encode_chunk(text: str, charset: str, mode: str, prefix: str) -> str:
    data = text.encode(charset)
    if mode == "Q":
        return f"{prefix}{_q_encode(data)}?="
    return f"{prefix}{base64.b64encode(data).decode()}?="


def _mostly_ascii(text: str) -> bool:
    return sum(not c.isascii() for c in text) * 4 < len(text)


def _fold_words(name: str, words: list[str]) -> str:
    """Join tokens into a header, folding before a token that would pass 78 characters."""
    lines: list[str] = []
    line = f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > 78 and line != f"{name}:":
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return "\r\n".join(lines)


def _unstructured(name: str, value: str, charset: str) -> str:
    if value.isascii():
        return _fold_words(name, value.split(" "))
    return _fold_words(name, _encoded_words(value, charset))


def _phrase(display: str, charset: str) -> str:
    if display.isascii():
        if any(c in _SPECIALS for c in display):
            escaped = display.replace("\\", "\\\\").replace('"', '\\"')
            return f'"{escaped}"'
        return display
    return " ".join(_encoded_words(display, charset))


def _address(display: str, email: str, charset: str) -> str:
    if not display:
        return email
    return f"{_phrase(display, charset)} <{email}>"


def _address_header(name: str, addresses: list[str]) -> str:
    tokens = [a + "," for a in addresses[:-1]] + addresses[-1:]
    return _fold_words(name, tokens)


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF (RFC 2045 section 6.8)."""
    encoded = base64.b64encode(data)
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    lines.append(b"")
    return CRLF.join(lines)


def _lf_to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _encode_body(data: bytes, cte: str) -> bytes:
    if cte == "base64":
        return _base64_lines(data)
    if cte == "quoted-printable":
        encoded = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True)
        # A lone "." or "From " opening a line is safe in MIME but not everywhere on the way.
        return _lf_to_crlf(encoded)
    body = _lf_to_crlf(data)
    return body if body.endswith(CRLF) else body + CRLF


def _param(name: str, value: str, rfc2047: bool = False) -> str:
    """A MIME parameter: quoted ASCII, else RFC 2231 (or, as Outlook does, RFC 2047 inside the
    quotes, which every reader accepts although the standard does not)."""
    if value.isascii():
        return f'{name}="{value}"'
    if rfc2047:
        return f'{name}="{"".join(_encoded_words(value, "utf-8"))}"'
    encoded = "".join(
        chr(b) if chr(b).isalnum() and b < 128 or chr(b) in "-._~" else f"%{b:02X}"
        for b in value.encode("utf-8")
    )
    return f"{name}*=utf-8''{encoded}"


@dataclass(slots=True)
class _Part:
    headers: list[str]
    body: bytes = b""
    parts: list[_Part] = field(default_factory=list)
    boundary: str = ""

    def to_bytes(self) -> bytes:
        head = CRLF.join(h.encode("ascii") for h in self.headers) + CRLF + CRLF
        if not self.parts:
            return head + self.body
        out = [head, b"This is a multi-part message in MIME format.\r\n"]
        marker = b"--" + self.boundary.encode()
        for part in self.parts:
            out.append(CRLF + marker + CRLF)
            out.append(part.to_bytes())
        out.append(CRLF + marker + b"--" + CRLF)
        return b"".join(out)


def _text_part(
    text: str, subtype: str, charset: str, cte: str, extra: tuple[str, ...] = ()
) -> _Part:
    data = text.encode(charset)
    return _Part(
        [
            f"Content-Type: text/{subtype}; charset={charset}",
            f"Content-Transfer-Encoding: {cte}",
            *extra,
        ],
        _encode_body(data, cte),
    )


def _binary_part(
    data: bytes, ctype: str, filename: str, *, inline_cid: str = "", outlook: bool = False
) -> _Part:
    if inline_cid:
        headers = [
            f"Content-Type: {ctype}; {_param('name', filename)}",
            f"Content-Disposition: inline; {_param('filename', filename)}",
            f"Content-ID: <{inline_cid}>",
        ]
    else:
        headers = [
            f"Content-Type: {ctype}; {_param('name', filename, outlook)}",
            f"Content-Disposition: attachment; {_param('filename', filename, outlook)}; "
            f"size={len(data)}",
        ]
    headers.append("Content-Transfer-Encoding: base64")
    return _Part(headers, _encode_body(data, "base64"))


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneratedMessage:
    """One message as it sits in a folder of the mailbox.

    `raw` is the RFC 5322 source with CRLF line ends; `flags` are IMAP system flags; `date` is
    the Date header (timezone-aware, in the sender's offset). The other fields describe what was
    generated, for tests and for the demo data: `kind` (see `KINDS`), `subject` and `text` (the
    decoded subject and main text/plain body, LF line ends), `language`, `charset`."""

    folder: str
    raw: bytes
    flags: tuple[str, ...]
    date: datetime
    message_id: str
    kind: str
    sender: str
    subject: str
    text: str
    language: str = "en"
    charset: str = "us-ascii"
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    ticket: str = ""
    has_html: bool = False
    attachments: tuple[str, ...] = ()


KINDS = (
    "request",  # a customer writes to support, opening a thread
    "reply",  # a customer answers in a thread
    "staff_reply",  # staff answer from the shared mailbox (Sent)
    "outbound",  # staff start a conversation, e.g. a quote (Sent)
    "auto_reply",  # out-of-office answers (Auto-Submitted: auto-replied)
    "bounce",  # a delivery status notification (multipart/report)
    "list",  # mailing-list mail (List-Id)
    "newsletter",  # bulk HTML mail with inline and remote images
    "notification",  # machine mail from a no-reply address, with a PDF
    "forward",  # a customer forwards a third party's message (Fwd:)
    "cold",  # an unknown sender writes for the first time
    "staff_bcc",  # staff mail to a customer with support@ in Bcc
    "stranger",  # an unknown sender quoting someone else's ticket reference
)


def write_mbox(path: str | Path, messages: Iterable[GeneratedMessage]) -> int:
    """Write messages to an mbox file (mboxrd: LF line ends, "From " lines quoted with ">");
    returns how many were written. The envelope line carries the sender and the date, so the
    file is as reproducible as the messages."""
    count = 0
    with open(path, "wb") as fh:
        for message in messages:
            data = _FROM_LINE.sub(rb">\1", message.raw.replace(b"\r\n", b"\n"))
            if not data.endswith(b"\n"):
                data += b"\n"
            when = message.date.astimezone(UTC)
            envelope = (
                f"From {message.sender or 'MAILER-DAEMON'} {_DAYS[when.weekday()]} "
                f"{_MONTHS[when.month - 1]} {when.day:2d} {when:%H:%M:%S} {when.year}\n"
            )
            fh.write(envelope.encode("ascii") + data + b"\n")
            count += 1
    return count


def write_eml_dir(path: str | Path, messages: Iterable[GeneratedMessage]) -> list[Path]:
    """Write one `.eml` file (raw bytes, CRLF) per message under `path/<folder>/`, numbered in
    order; returns the paths written."""
    root = Path(path)
    written: list[Path] = []
    for number, message in enumerate(messages, 1):
        folder = root / message.folder
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{number:05d}.eml"
        target.write_bytes(message.raw)
        written.append(target)
    return written


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------

_CLIENTS = ("outlook", "gmail", "thunderbird", "apple")


@dataclass(slots=True)
class _Thread:
    kind: str  # "support", "outbound" or "list"
    customer: Person
    staff: Person
    cc: list[Person]
    language: str
    topic: int
    base_subject: str
    subs: dict[str, str]
    steps: list[str]
    due: int
    ticket: str = ""
    opp: str = ""
    ids: list[str] = field(default_factory=list)
    last_text: str = ""
    last_name: str = ""
    last_email: str = ""
    last_date: datetime = DEFAULT_START
    pending: GeneratedMessage | None = None  # a bounce waiting to arrive


@dataclass(slots=True)
class _Draft:
    """What one message is made of, before serialisation."""

    kind: str
    folder: str
    sender: Person
    to: list[Person]
    subject: str
    text: str
    language: str
    cc: list[Person] = field(default_factory=list)
    html: str = ""
    attachments: list[_Part] = field(default_factory=list)
    attachment_names: list[str] = field(default_factory=list)
    related: list[_Part] = field(default_factory=list)
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    extra_headers: list[str] = field(default_factory=list)
    ticket: str = ""
    charset: str = ""
    cte: str = ""
    display_sender: str = ""
    sender_email: str = ""
    body_override: _Part | None = None
    flags_hint: tuple[str, ...] = ()
    to_override: str = ""
    own: str = ""  # the text without the quote, which the next reply quotes


class _Generator:
    def __init__(
        self,
        count: int,
        seed: int,
        start: datetime,
        mailbox_address: str,
        people: list[Person],
        attachment_max_bytes: int,
        span_days: int,
    ) -> None:
        self.rng = random.Random(seed)
        self.count = count
        self.start = start if start.tzinfo else start.replace(tzinfo=UTC)
        self.mailbox = mailbox_address
        self.mailbox_domain = mailbox_address.rpartition("@")[2].lower()
        self.max_attachment = max(1024, attachment_max_bytes)
        self.span = timedelta(days=span_days)
        self.staff = [p for p in people if p.role == "staff"] or [
            p for p in _PEOPLE if p.role == "staff"
        ]
        self.customers = [p for p in people if p.role != "staff"]
        if not self.customers:
            raise ValueError("people must include at least one non-staff person")
        self.by_company: dict[str, list[Person]] = {}
        for person in self.customers:
            if person.company:
                self.by_company.setdefault(person.company, []).append(person)
        self.threads: list[_Thread] = []
        self.ticket_counter = 1000
        self.opp_counter = 10
        self.known_tickets: list[tuple[str, str]] = []
        self.unknown_cache: list[Person] = []
        self.seq = 0
        self.mailbox_staff = Person(
            "Relay", "Support", mailbox_address, "Relay", role="staff", language="en"
        )

    # ---- small helpers ----------------------------------------------------------------------

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _when(self, index: int) -> datetime:
        step = self.span / self.count
        offset = step * (index + 0.1 + 0.8 * self.rng.random())
        moment = self.start - self.span + offset
        return moment.replace(microsecond=0)

    def _steps_for(self, minutes: float) -> int:
        step_minutes = self.span.total_seconds() / 60 / self.count
        return max(1, round(minutes / step_minutes))

    def _client(self, person: Person) -> str:
        if person.role == "staff":
            return "relay"
        if person.role == "service":  # newsletters, billing robots, the mail system
            return "service"
        if person.domain == "gmail.com":
            return "gmail"
        return _CLIENTS[zlib.crc32(person.email.encode()) % len(_CLIENTS)]

    def _message_id(self, person: Person, when: datetime) -> str:
        self.seq += 1
        token = f"{self.rng.getrandbits(64):016x}"
        client = self._client(person)
        if client == "relay":
            return f"<relay.{when:%Y%m%d%H%M%S}.{token}@{self.mailbox_domain}>"
        if client == "gmail":
            blob = base64.b64encode(self.rng.randbytes(30)).decode().replace("/", "_")
            return f"<CA{blob}@mail.gmail.com>"
        if client == "outlook":
            return (
                f"<AM{self.seq % 9 + 1}PR0{self.seq % 7 + 1}MB{token[:4].upper()}"
                f"{token[4:12].upper()}@AM{self.seq % 9 + 1}PR0{self.seq % 7 + 1}"
                f"MB{token[:4].upper()}.eurprd0{self.seq % 8 + 1}.prod.outlook.example>"
            )
        if client == "apple":
            return f"<{token[:8].upper()}-{token[8:12].upper()}-{self.seq:04X}@{person.domain}>"
        return f"<{token[:8]}-{token[8:12]}-{self.seq:04x}-{token[12:]}@{person.domain}>"

    def _local_time(self, person: Person, when: datetime) -> datetime:
        return when.astimezone(timezone(timedelta(minutes=person.utc_offset_minutes)))

    def _pick_charset(self, lang: _Lang, *texts: str) -> tuple[str, str]:
        charset, cte, _ = self.rng.choices(lang.charsets, [w for _, _, w in lang.charsets])[0]
        combined = "".join(texts)
        if charset == "us-ascii" and not combined.isascii():
            charset, cte = "utf-8", "quoted-printable"
        try:
            combined.encode(charset)
        except UnicodeEncodeError:
            charset = "utf-8"
            cte = "quoted-printable" if lang.code in ("en", "de", "fr", "es") else "base64"
        return charset, cte

    def _staff_for(self, language: str) -> Person:
        fluent = [s for s in self.staff if s.language == language]
        return self.rng.choice(fluent or self.staff)

    def _customer(self) -> Person:
        return self.rng.choice(self.customers)

    def _colleagues(self, person: Person, most: int) -> list[Person]:
        others = [p for p in self.by_company.get(person.company, []) if p != person]
        if not others:
            return []
        return self.rng.sample(others, min(len(others), self.rng.randint(1, most)))

    def _unknown(self, language: str | None = None) -> Person:
        if self.unknown_cache and self._chance(0.25):
            return self.rng.choice(self.unknown_cache)
        pool = [n for n in _UNKNOWN_NAMES if language is None or n[3] == language] or list(
            _UNKNOWN_NAMES
        )
        first, last, local, lang = self.rng.choice(pool)
        if self._chance(0.3):
            domain = self.rng.choice(_FREEMAIL[lang])
            local = f"{local}{self.rng.randrange(10, 99)}"
        else:
            domain = self.rng.choice(_UNKNOWN_DOMAINS)
        person = Person(
            first,
            last,
            f"{local}@{domain}",
            language=lang,
            utc_offset_minutes=self.rng.choice((-300, 0, 60, 180, 480, 540)),
            family_name_first=lang in ("ja", "zh"),
        )
        self.unknown_cache.append(person)
        return person

    def _subs(self, lang: _Lang) -> dict[str, str]:
        return {
            "order": f"ORD-{self.rng.randrange(10000, 99999)}",
            "invoice": f"INV-2026-{self.rng.randrange(100, 9999):04d}",
            "pallets": str(self.rng.choice((4, 6, 12, 18, 24, 33, 40))),
            "city": self.rng.choice(lang.cities),
            "week": str(self.rng.randrange(2, 52)),
            "weekday": self.rng.choice(lang.weekdays),
            "n": str(self.rng.randrange(1000, 9999)),
        }

    def _quote_date(self, lang: str, when: datetime) -> str:
        if lang == "en":
            return f"{when.day} {_MONTHS[when.month - 1]} {when.year} at {when:%H:%M}"
        if lang in ("ja", "zh"):
            return f"{when.year}年{when.month}月{when.day}日 {when:%H:%M}"
        if lang in ("fr", "es"):
            return f"{when:%d/%m/%Y %H:%M}"
        return f"{when:%d.%m.%Y %H:%M}"

    def _signature(self, person: Person) -> str:
        lines = [person.name]
        if person.title:
            lines.append(person.title)
        if person.company:
            lines.append(person.company)
        if person.phone:
            lines.append(f"Tel. {person.phone}")
        return "\n".join(lines)

    def _quote(self, lang: _Lang, thread: _Thread) -> str:
        header = lang.quote_header.format(
            date=self._quote_date(lang.code, thread.last_date),
            name=thread.last_name,
            email=thread.last_email,
        )
        quoted = [("> " + line).rstrip() for line in thread.last_text.rstrip("\n").split("\n")]
        return header + "\n" + "\n".join(quoted[:14]) + "\n"

    def _html_from_text(self, text: str, client: str, charset: str, quote_html: str = "") -> str:
        paragraphs = [p for p in text.strip("\n").split("\n\n") if p]
        body = "".join(
            "<p>" + "<br>\n".join(html.escape(line) for line in p.split("\n")) + "</p>\n"
            for p in paragraphs
        )
        if quote_html:
            body += f'<blockquote type="cite" style="margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex">\n{quote_html}</blockquote>\n'  # noqa: E501
        if client == "gmail":
            return f'<div dir="ltr">{body}</div>\n'
        if client == "outlook":
            return (
                '<html xmlns:o="urn:schemas-microsoft-com:office:office">\n<head>\n'
                f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
                '<style><!-- p.MsoNormal {margin:0cm; font-family:"Calibri",sans-serif;} --></style>\n'  # noqa: E501
                '</head>\n<body lang="EN-GB"><div class="WordSection1">\n'
                + body.replace("<p>", '<p class="MsoNormal">')
                + "</div>\n</body>\n</html>\n"
            )
        return (
            f'<!DOCTYPE html>\n<html>\n<head><meta charset="{charset}"></head>\n'
            f'<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px">\n{body}'
            "</body>\n</html>\n"
        )

    def _attachment_size(self) -> int:
        roll = self.rng.random()
        if roll < 0.85:
            size = self.rng.randrange(3_000, 30_000)
        elif roll < 0.98:
            size = self.rng.randrange(30_000, 200_000)
        else:
            size = self.rng.randrange(200_000, max(200_001, self.max_attachment + 1))
        return min(size, self.max_attachment)

    def _attachment(self, kind: str, filename: str, lang: str, title: str, outlook: bool) -> _Part:
        size = self._attachment_size()
        if kind == "png":
            return _binary_part(_noise_png(self.rng, size), "image/png", filename, outlook=outlook)
        if kind == "csv":
            return _binary_part(_csv(self.rng, lang, size), "text/csv", filename, outlook=outlook)
        lines = [title, f"Document {self.rng.randrange(100000, 999999)}", "Relay CRM demo data"]
        return _binary_part(
            _pdf(self.rng, lines, size), "application/pdf", filename, outlook=outlook
        )

    # ---- the plan ---------------------------------------------------------------------------

    def run(self) -> Iterator[GeneratedMessage]:
        for index in range(self.count):
            when = self._when(index)
            thread = self._due(index)
            if thread is not None:
                made = self._continue(thread, index, when)
            else:
                made = self._start(index, when)
            yield made if isinstance(made, GeneratedMessage) else self._finish(made, when)

    def _due(self, index: int) -> _Thread | None:
        best = None
        for thread in self.threads:
            if thread.due <= index and (best is None or thread.due < best.due):
                best = thread
        return best

    def _start(self, index: int, when: datetime) -> _Draft | GeneratedMessage:
        kinds = (
            "request",
            "outbound",
            "newsletter",
            "list",
            "notification",
            "forward",
            "cold",
            "bounce",
            "staff_bcc",
            "stranger",
        )
        weights = (40, 8, 7, 6, 5, 5, 5, 2, 3, 1 if self.known_tickets else 0)
        kind = self.rng.choices(kinds, weights)[0]
        return getattr(self, f"_new_{kind}")(index, when)

    # ---- conversations ----------------------------------------------------------------------

    def _new_request(self, index: int, when: datetime) -> _Draft:
        customer = self._customer()
        lang = LANGUAGES.get(customer.language, _EN)
        staff = self._staff_for(lang.code)
        topic = self.rng.randrange(len(lang.subjects))
        subs = self._subs(lang)
        subject = lang.subjects[topic].format(**subs)
        cc = self._colleagues(customer, 3) if self._chance(0.35) else []
        attach = _TOPIC_ATTACHMENT[topic] if self._chance(0.5) else None
        text = self._customer_text(lang, customer, staff, topic, subs, attach, opener=True)
        length = self.rng.choices((0, 1, 2, 3, 4), (12, 30, 25, 18, 15))[0]
        steps = ["staff_reply", "reply"] * 2
        thread = _Thread(
            "support",
            customer,
            staff,
            cc,
            lang.code,
            topic,
            subject,
            subs,
            steps[:length],
            due=index + self._steps_for(self.rng.uniform(20, 1500)),
        )
        draft = _Draft(
            "request", INBOX, customer, [self.mailbox_staff], subject, text, lang.code, cc=cc
        )
        if attach:
            self._attach(draft, lang, topic, subs, customer)
        if length:
            draft.flags_hint = (ANSWERED,)
            self.threads.append(thread)
        self._remember(thread, draft, when)
        return draft

    def _customer_text(
        self,
        lang: _Lang,
        customer: Person,
        staff: Person,
        topic: int,
        subs: dict[str, str],
        attach: str | None,
        opener: bool,
    ) -> str:
        greeting = self.rng.choice(lang.greetings).format(staff=staff.first_name)
        if opener:
            sentences = [lang.openers[topic].format(**subs)]
            sentences += self.rng.sample(lang.fillers, self.rng.randint(0, 2))
        else:
            sentences = [self.rng.choice(lang.followups)]
        if attach and lang.attach_what[topic]:
            sentences.append(lang.attach_sentence.format(what=lang.attach_what[topic]))
        body = lang.sentence_sep.join(sentences)
        closing = self.rng.choice(lang.closings)
        signature = self._signature(customer)
        if self._chance(0.3):
            signature = "-- \n" + signature
        return f"{greeting}\n\n{body}\n\n{closing}\n{signature}\n"

    def _attach(
        self, draft: _Draft, lang: _Lang, topic: int, subs: dict[str, str], person: Person
    ) -> None:
        kind = _TOPIC_ATTACHMENT[topic] or "pdf"
        filename = (lang.filenames[topic] or "document.pdf").format(**subs)
        outlook = self._client(person) == "outlook"
        title = lang.subjects[topic].format(**subs)
        draft.attachments.append(self._attachment(kind, filename, lang.code, title, outlook))
        draft.attachment_names.append(filename)

    def _remember(self, thread: _Thread, draft: _Draft, when: datetime, track: bool = True) -> None:
        """Give the draft its Message-ID and threading headers (RFC 5322 section 3.6.4: the
        parent's References plus the parent, trimmed to the root and the latest ones)."""
        ids = thread.ids
        draft.references = ids if len(ids) <= 8 else [ids[0], *ids[-7:]]
        draft.in_reply_to = ids[-1] if ids else ""
        message_id = self._message_id(draft.sender, when)
        draft.extra_headers.insert(0, f"Message-ID: {message_id}")
        if not track:  # an auto-reply: the conversation goes on from the message it answered
            return
        thread.ids = [*ids, message_id]
        thread.last_text = draft.own or draft.text
        thread.last_name = draft.display_sender or draft.sender.name
        thread.last_email = draft.sender_email or draft.sender.email
        thread.last_date = self._local_time(draft.sender, when)

    def _continue(self, thread: _Thread, index: int, when: datetime) -> _Draft | GeneratedMessage:
        step = thread.steps.pop(0)
        if step == "bounce" and thread.pending is not None:
            self.threads.remove(thread)
            return thread.pending
        if step == "auto_reply":
            draft = self._auto_reply(thread)
        elif step == "list_reply":
            draft = self._list_reply(thread)
        elif step == "staff_reply":
            draft = self._staff_reply(thread)
        else:
            draft = self._customer_reply(thread)
        self._remember(thread, draft, when, track=step != "auto_reply")
        if step == "staff_reply" and self._chance(0.07):
            thread.steps.insert(0, "auto_reply")
        if thread.steps:
            delay = (
                self.rng.uniform(5, 60)
                if thread.steps[0] in ("auto_reply", "bounce")
                else self.rng.uniform(30, 3 * 1440)
            )
            thread.due = index + self._steps_for(delay)
        else:
            self.threads.remove(thread)
        return draft

    def _reply_subject(self, thread: _Thread, lang: _Lang, staff: bool) -> str:
        base = thread.base_subject
        if thread.ticket:
            base = f"[{thread.ticket}] {base}"
        prefix = "Re: " if staff else self.rng.choice(lang.reply_prefixes)
        return prefix + base

    def _staff_reply(self, thread: _Thread) -> _Draft:
        lang = LANGUAGES.get(thread.language, _EN)
        staff = thread.staff
        customer = thread.customer
        first_reply = thread.kind == "support" and not thread.ticket
        if first_reply:
            self.ticket_counter += 1
            thread.ticket = f"TKT-{self.ticket_counter}"
            self.known_tickets.append((thread.ticket, thread.base_subject))
        first = customer.last_name if lang.code == "ja" else customer.first_name
        sentences = []
        if first_reply:
            sentences.append(lang.staff_ack.format(ticket=thread.ticket))
        sentences.append(lang.staff_answers[thread.topic].format(**thread.subs))
        greeting = lang.staff_greeting.format(first=first, last=customer.last_name)
        own = (
            f"{greeting}\n\n{lang.sentence_sep.join(sentences)}\n\n{lang.staff_closing}\n"
            f"{staff.name}\nRelay Support\n"
        )
        text = own + "\n" + self._quote(lang, thread)
        subject = self._reply_subject(thread, lang, staff=True)
        to = [customer]
        cc = list(thread.cc)
        draft = _Draft(
            "staff_reply",
            SENT,
            staff,
            to,
            subject,
            text,
            lang.code,
            cc=cc,
            ticket=thread.ticket,
            display_sender=f"{staff.name} (Relay Support)",
            sender_email=self.mailbox,
        )
        quote_html = "<p>" + html.escape(thread.last_text).replace("\n", "<br>\n") + "</p>\n"
        draft.html = self._html_from_text(own, "relay", "utf-8", quote_html)
        draft.own = own
        if thread.topic == 2 and self._chance(0.5):
            self._attach(draft, lang, 2, thread.subs, staff)
        return draft

    def _customer_reply(self, thread: _Thread) -> _Draft:
        lang = LANGUAGES.get(thread.language, _EN)
        customer = thread.customer
        attach = _TOPIC_ATTACHMENT[thread.topic] if self._chance(0.2) else None
        own = self._customer_text(
            lang, customer, thread.staff, thread.topic, thread.subs, attach, opener=False
        )
        text = own + "\n" + self._quote(lang, thread)
        subject = self._reply_subject(thread, lang, staff=False)
        to = [self.mailbox_staff]
        draft = _Draft(
            "reply",
            INBOX,
            customer,
            to,
            subject,
            text,
            lang.code,
            cc=list(thread.cc),
            ticket=thread.ticket,
            own=own,
        )
        if attach:
            self._attach(draft, lang, thread.topic, thread.subs, customer)
        return draft

    def _auto_reply(self, thread: _Thread) -> _Draft:
        lang = LANGUAGES.get(thread.language, _EN)
        customer = thread.customer
        back = thread.last_date + timedelta(days=self.rng.randrange(3, 15))
        colleagues = self._colleagues(customer, 1)
        if colleagues:
            colleague = f"{colleagues[0].name} <{colleagues[0].email}>"
        else:
            colleague = f"info@{customer.domain}"
        day = self._quote_date(lang.code, back).rsplit(" ", 1)[0].removesuffix(" at")
        text = lang.auto_body.format(date=day, colleague=colleague) + "\n"
        subject = lang.auto_prefix + self._reply_subject(thread, lang, staff=True)
        draft = _Draft(
            "auto_reply",
            INBOX,
            customer,
            [self.mailbox_staff],
            subject,
            text,
            lang.code,
            ticket=thread.ticket,
        )
        draft.extra_headers += [
            "Auto-Submitted: auto-replied",
            "X-Autoreply: yes",
            "X-Auto-Response-Suppress: All",
        ]
        draft.flags_hint = (SEEN,)
        return draft

    def _new_outbound(self, index: int, when: datetime) -> _Draft:
        customer = self._customer()
        lang = LANGUAGES.get(customer.language, _EN)
        staff = self._staff_for(lang.code)
        subs = self._subs(lang)
        self.opp_counter += 1
        opp = f"OPP-{self.opp_counter}"
        subject = f"{lang.quote_subject.format(**subs)} [{opp}]"
        cc = self._colleagues(customer, 2)
        if self._chance(0.4):
            cc.append(self.rng.choice(self.staff))
        first = customer.last_name if lang.code == "ja" else customer.first_name
        greeting = lang.staff_greeting.format(first=first, last=customer.last_name)
        text = (
            f"{greeting}\n\n{lang.quote_body.format(**subs)}\n\n{lang.staff_closing}\n"
            f"{self._signature(staff)}\n"
        )
        draft = _Draft("outbound", SENT, staff, [customer], subject, text, lang.code, cc=cc)
        draft.sender_email, draft.display_sender = self.mailbox, f"{staff.name} (Relay Support)"
        draft.html = self._html_from_text(text, "relay", "utf-8")
        filename = f"Quote_{opp}.pdf"
        draft.attachments.append(
            self._attachment("pdf", filename, lang.code, f"Quote {opp}", outlook=False)
        )
        draft.attachment_names.append(filename)
        length = self.rng.choices((0, 1, 2), (40, 35, 25))[0]
        thread = _Thread(
            "outbound",
            customer,
            staff,
            cc[:2],
            lang.code,
            6,
            subject,
            subs,
            ["reply", "staff_reply"][:length],
            due=index + self._steps_for(self.rng.uniform(60, 2 * 1440)),
            opp=opp,
        )
        if length:
            self.threads.append(thread)
        self._remember(thread, draft, when)
        return draft

    def _new_staff_bcc(self, index: int, when: datetime) -> _Draft:
        customer = self._customer()
        lang = LANGUAGES.get(customer.language, _EN)
        staff = self._staff_for(lang.code)
        subs = self._subs(lang)
        topic = self.rng.randrange(len(lang.subjects))
        first = customer.last_name if lang.code == "ja" else customer.first_name
        greeting = lang.staff_greeting.format(first=first, last=customer.last_name)
        text = (
            f"{greeting}\n\n{lang.staff_answers[topic].format(**subs)}\n\n"
            f"{lang.staff_closing}\n{self._signature(staff)}\n"
        )
        draft = _Draft(
            "staff_bcc",
            INBOX,
            staff,
            [customer],
            lang.subjects[topic].format(**subs),
            text,
            lang.code,
        )
        draft.flags_hint = (SEEN,)
        draft.extra_headers.insert(0, f"Message-ID: {self._message_id(staff, when)}")
        return draft

    # ---- mail that is not a conversation with a customer ------------------------------------

    def _new_cold(self, index: int, when: datetime) -> _Draft:
        lang_code = self.rng.choice(("en", "en", "de", "fr", "es", "ja", "ru", "zh"))
        lang = LANGUAGES[lang_code]
        sender = self._unknown(lang_code)
        subs = self._subs(lang)
        topic = self.rng.choice((3, 6))
        subject = lang.subjects[topic].format(**subs)
        text = self._customer_text(
            lang, sender, self.rng.choice(self.staff), topic, subs, None, opener=True
        )
        draft = _Draft("cold", INBOX, sender, [self.mailbox_staff], subject, text, lang_code)
        draft.extra_headers.insert(0, f"Message-ID: {self._message_id(sender, when)}")
        return draft

    def _new_stranger(self, index: int, when: datetime) -> _Draft:
        ticket, base = self.rng.choice(self.known_tickets)
        sender = self._unknown("en")
        text = (
            "Hi,\n\nI have the same problem as my colleague. Could you add me to this ticket "
            f"and send me the updates?\n\nThanks,\n{sender.name}\n"
        )
        draft = _Draft(
            "stranger",
            INBOX,
            sender,
            [self.mailbox_staff],
            f"Re: [{ticket}] {base}",
            text,
            "en",
            ticket=ticket,
        )
        draft.extra_headers.insert(0, f"Message-ID: {self._message_id(sender, when)}")
        return draft

    def _new_forward(self, index: int, when: datetime) -> _Draft:
        customer = self._customer()
        lang = LANGUAGES.get(customer.language, _EN)
        carrier_lang = LANGUAGES[self.rng.choice(("en", "de", lang.code))]
        carrier = Person(
            "Dispo",
            "Team",
            f"dispo@{self.rng.choice(_UNKNOWN_DOMAINS)}",
            language=carrier_lang.code,
            utc_offset_minutes=60,
        )
        subs = self._subs(carrier_lang)
        inner_subject = carrier_lang.subjects[3].format(**subs)
        inner_text = (
            f"{carrier_lang.greetings[0].format(staff='')}\n\n"
            f"{carrier_lang.staff_answers[3].format(**subs)}\n\n"
            f"{carrier_lang.closings[0]}\nDispo Team\n"
        )
        inner_when = when - timedelta(hours=self.rng.randrange(1, 48))
        inner = _Draft(
            "inner", "", carrier, [customer], inner_subject, inner_text, carrier_lang.code
        )  # no folder: it reached the customer, not our mailbox, so it has no Received lines
        inner.extra_headers.insert(0, f"Message-ID: {self._message_id(carrier, inner_when)}")
        inner_raw = self._finish(inner, inner_when).raw
        subject = lang.forward_prefix + inner_subject
        note = (
            f"{self.rng.choice(lang.greetings).format(staff='')}\n\n{lang.forward_note}\n\n"
            f"{self.rng.choice(lang.closings)}\n{self._signature(customer)}\n"
        )
        draft = _Draft("forward", INBOX, customer, [self.mailbox_staff], subject, note, lang.code)
        draft.extra_headers.insert(0, f"Message-ID: {self._message_id(customer, when)}")
        if self._chance(0.6):
            cte = "7bit" if inner_raw.isascii() else "8bit"  # RFC 2046 section 5.2.1
            draft.attachments.append(
                _Part(
                    [
                        "Content-Type: message/rfc822",
                        'Content-Disposition: attachment; filename="forwarded.eml"',
                        f"Content-Transfer-Encoding: {cte}",
                    ],
                    inner_raw,
                )
            )
            draft.attachment_names.append("forwarded.eml")
        else:
            inner_date = format_datetime(self._local_time(carrier, inner_when))
            draft.text = (
                f"{note}\n---------- Forwarded message ---------\nFrom: {carrier.name} "
                f"<{carrier.email}>\nDate: {inner_date}\nSubject: {inner_subject}\n"
                f"To: {customer.name} <{customer.email}>\n\n{inner_text}"
            )
        return draft

    def _new_bounce(self, index: int, when: datetime) -> GeneratedMessage:
        customer = self._customer()
        staff = self._staff_for("en")
        local, _, domain = customer.email.partition("@")
        typo = f"{local}@{domain.replace('-', '', 1) if '-' in domain else 'x' + domain}"
        subject = "Follow-up on our call"
        text = (
            f"Hi {customer.first_name},\n\nthanks for your time today. As promised, I will "
            f"send the revised terms by Friday.\n\nBest regards,\n{self._signature(staff)}\n"
        )
        ghost = Person(customer.first_name, customer.last_name, typo)
        draft = _Draft("outbound", SENT, staff, [ghost], subject, text, "en")
        draft.sender_email, draft.display_sender = self.mailbox, f"{staff.name} (Relay Support)"
        original_id = self._message_id(staff, when)
        draft.extra_headers.insert(0, f"Message-ID: {original_id}")
        draft.flags_hint = (SEEN,)
        original = self._finish(draft, when)
        bounce_when = when + timedelta(seconds=self.rng.randrange(5, 120))
        bounce = self._finish(self._bounce_for(original, typo, when), bounce_when)
        self.threads.append(
            _Thread(
                "bounce",
                customer,
                staff,
                [],
                "en",
                0,
                subject,
                {},
                ["bounce"],
                due=index + 1,
                pending=bounce,
            )
        )
        return original

    def _bounce_for(self, original: GeneratedMessage, recipient: str, when: datetime) -> _Draft:
        daemon = Person(
            "Mail Delivery", "System", f"MAILER-DAEMON@mx1.{self.mailbox_domain}", role="service"
        )
        queue_id = f"{self.rng.getrandbits(40):010X}"
        arrival = format_datetime(when.astimezone(UTC))
        explanation = (
            f"This is the mail system at host mx1.{self.mailbox_domain}.\n\n"
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients. It's attached below.\n\n"
            f"<{recipient}>: host {recipient.partition('@')[2]} said: 550 5.1.1 "
            "<" + recipient + ">: Recipient address rejected: User unknown\n"
        )
        status = (
            f"Reporting-MTA: dns; mx1.{self.mailbox_domain}\n"
            f"X-Postfix-Queue-ID: {queue_id}\n"
            f"Arrival-Date: {arrival}\n\n"
            f"Final-Recipient: rfc822; {recipient}\n"
            f"Original-Recipient: rfc822;{recipient}\n"
            "Action: failed\nStatus: 5.1.1\n"
            f"Remote-MTA: dns; {recipient.partition('@')[2]}\n"
            "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
        )
        report = _Part(
            [
                "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                f' boundary="{self._boundary()}"'
            ],
        )
        report.boundary = report.headers[0].rpartition('boundary="')[2].rstrip('"')
        report.parts = [
            _Part(
                ["Content-Description: Notification", "Content-Type: text/plain; charset=us-ascii"],
                _encode_body(explanation.encode(), "7bit"),
            ),
            _Part(
                ["Content-Description: Delivery report", "Content-Type: message/delivery-status"],
                _encode_body(status.encode(), "7bit"),
            ),
            _Part(
                ["Content-Description: Undelivered Message", "Content-Type: message/rfc822"],
                original.raw,
            ),
        ]
        draft = _Draft(
            "bounce",
            INBOX,
            daemon,
            [],
            "Undelivered Mail Returned to Sender",
            explanation,
            "en",
            body_override=report,
        )
        draft.sender_email = daemon.email
        draft.display_sender = "Mail Delivery System"
        draft.extra_headers += [
            f"Message-ID: <{queue_id}.{self.seq}@mx1.{self.mailbox_domain}>",
            "Auto-Submitted: auto-replied",
        ]
        draft.to_override = original.sender
        draft.flags_hint = (SEEN,)
        return draft

    def _new_list(self, index: int, when: datetime) -> _Draft:
        name, email = self.rng.choice(_LIST_PEOPLE)
        first, _, last = name.partition(" ")
        sender = Person(first, last, email, utc_offset_minutes=self.rng.choice((-300, 0, 60)))
        topic = self.rng.randrange(len(_LIST_SUBJECTS))
        subject = f"[relay-users] {_LIST_SUBJECTS[topic]}"
        own = f"Hi all,\n\n{_LIST_OPENERS[topic]}\n\n{first}\n"
        draft = _Draft("list", INBOX, sender, [], subject, own + self._list_footer(), "en", own=own)
        self._list_headers(draft)
        length = self.rng.choices((0, 1, 2, 3), (30, 30, 25, 15))[0]
        thread = _Thread(
            "list",
            sender,
            sender,
            [],
            "en",
            topic,
            _LIST_SUBJECTS[topic],
            {},
            ["list_reply"] * length,
            due=index + self._steps_for(self.rng.uniform(30, 1440)),
        )
        if length:
            self.threads.append(thread)
        self._remember(thread, draft, when)
        return draft

    def _list_footer(self) -> str:
        return (
            "\n_______________________________________________\n"
            "relay-users mailing list\nrelay-users@lists.relay-community.example\n"
            "https://lists.relay-community.example/mailman/listinfo/relay-users\n"
        )

    def _list_headers(self, draft: _Draft) -> None:
        draft.to_override = "relay-users@lists.relay-community.example"
        draft.extra_headers += [
            "List-Id: Relay users <relay-users.lists.relay-community.example>",
            "List-Post: <mailto:relay-users@lists.relay-community.example>",
            "List-Unsubscribe: <https://lists.relay-community.example/mailman/options/"
            "relay-users>,\r\n <mailto:relay-users-request@lists.relay-community.example"
            "?subject=unsubscribe>",
            "List-Archive: <https://lists.relay-community.example/pipermail/relay-users/>",
            "Precedence: list",
            'Sender: "relay-users" <relay-users-bounces@lists.relay-community.example>',
        ]
        draft.flags_hint = (SEEN,) if self._chance(0.7) else ()

    def _list_reply(self, thread: _Thread) -> _Draft:
        name, email = self.rng.choice(_LIST_PEOPLE)
        first, _, last = name.partition(" ")
        sender = Person(first, last, email)
        header = f"On {self._quote_date('en', thread.last_date)}, {thread.last_name} wrote:"
        quoted = "\n".join(("> " + line).rstrip() for line in thread.last_text.strip().split("\n"))
        own = f"{self.rng.choice(_LIST_REPLIES)}\n\n{first}\n"
        text = f"{header}\n{quoted}\n\n{own}" + self._list_footer()
        draft = _Draft(
            "list",
            INBOX,
            sender,
            [],
            f"Re: [relay-users] {thread.base_subject}",
            text,
            "en",
            own=own,
        )
        self._list_headers(draft)
        return draft

    def _new_newsletter(self, index: int, when: datetime) -> _Draft:
        code = self.rng.choice(("en", "en", "de"))
        if code == "en":
            sender = Person("Shipping", "Weekly", "news@shipping-weekly.example", role="service")
            list_id = "Shipping Weekly <weekly.shipping-weekly.example>"
            title, unsubscribe_text = "Shipping Weekly", "Unsubscribe"
        else:
            sender = Person(
                "Logistik",
                "Aktuell",
                "newsletter@logistik-aktuell.example",
                role="service",
                language="de",
                utc_offset_minutes=60,
            )
            list_id = "Logistik Aktuell <news.logistik-aktuell.example>"
            title, unsubscribe_text = "Logistik Aktuell", "Abmelden"
        articles = self.rng.sample(_NEWS_ARTICLES[code], 3)
        issue = self.rng.randrange(100, 400)
        subject = f"{title} #{issue}: {articles[0][0]}"
        token = f"{self.rng.getrandbits(48):012x}"
        host = sender.domain
        text = (
            f"{title} #{issue}\n\n"
            + "\n\n".join(
                f"{head}\n{body}\nhttps://{host}/a/{issue}/{n}"
                for n, (head, body) in enumerate(articles)
            )
            + f"\n\n{unsubscribe_text}: https://{host}/u/{token}\n"
        )
        cid_logo = f"logo.{token}@{host}"
        cid_banner = f"banner.{token}@{host}"
        items = "".join(
            f'<tr><td style="padding:12px 24px"><h2 style="margin:0 0 6px;font-size:18px">'
            f'<a href="https://{host}/r/{token}/{n}" style="color:#1f4e8c">{html.escape(head)}</a>'
            f'</h2><p style="margin:0;color:#333">{html.escape(body)}</p></td></tr>\n'
            for n, (head, body) in enumerate(articles)
        )
        html_body = (
            '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n"
            "<style>body{margin:0;background:#f2f4f7} .wrap{max-width:600px;margin:auto}</style>\n"
            '</head>\n<body>\n<table class="wrap" role="presentation" width="100%" '
            'cellspacing="0" cellpadding="0" style="background:#fff">\n'
            f'<tr><td style="padding:16px 24px"><img src="cid:{cid_logo}" width="32" height="32" '
            f'alt="{html.escape(title)}"> <img src="cid:{cid_banner}" width="120" height="40" '
            'alt=""></td></tr>\n'
            f"{items}"
            f'<tr><td style="padding:24px;font-size:12px;color:#777"><a href="https://{host}/u/'
            f'{token}">{unsubscribe_text}</a></td></tr>\n</table>\n'
            f'<img src="https://{host}/t/open.gif?u={token}" width="1" height="1" alt="">\n'
            "</body>\n</html>\n"
        )
        draft = _Draft(
            "newsletter",
            INBOX,
            sender,
            [self.mailbox_staff],
            subject,
            text,
            code,
            html=html_body,
            charset="utf-8",
            cte="quoted-printable",
        )
        draft.related = [
            _binary_part(_LOGO_PNG, "image/png", "logo.png", inline_cid=cid_logo),
            _binary_part(_BANNER_PNG, "image/png", "banner.png", inline_cid=cid_banner),
        ]
        draft.extra_headers += [
            f"Message-ID: <{token}.{issue}@mailer.{host}>",
            f"List-Id: {list_id}",
            f"List-Unsubscribe: <https://{host}/u/{token}>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Precedence: bulk",
        ]
        draft.flags_hint = (SEEN,) if self._chance(0.5) else ()
        return draft

    def _new_notification(self, index: int, when: datetime) -> _Draft:
        sender = Person(
            "CloudHost",
            "Billing",
            "noreply@billing.cloudhost.example",
            role="service",
            utc_offset_minutes=-300,
        )
        invoice = f"CH-{self.rng.randrange(100000, 999999)}"
        amount = f"{self.rng.randrange(2000, 90000) / 100:.2f}"
        subject = f"Your CloudHost invoice {invoice}"
        text = (
            f"Hello,\n\nyour invoice {invoice} for {amount} USD is attached and will be charged "
            "to the card on file.\n\nThis is an automated message; please do not reply.\n"
        )
        draft = _Draft(
            "notification",
            INBOX,
            sender,
            [self.mailbox_staff],
            subject,
            text,
            "en",
            charset="us-ascii",
            cte="7bit",
        )
        draft.html = self._html_from_text(text, "relay", "us-ascii")
        filename = f"{invoice}.pdf"
        draft.attachments.append(
            self._attachment("pdf", filename, "en", f"Invoice {invoice}", False)
        )
        draft.attachment_names.append(filename)
        draft.extra_headers += [
            f"Message-ID: <{invoice}.{self.rng.getrandbits(32):08x}@billing.cloudhost.example>",
            "Auto-Submitted: auto-generated",
        ]
        draft.flags_hint = (SEEN,)
        return draft

    # ---- serialisation ----------------------------------------------------------------------

    def _boundary(self) -> str:
        # "=_" can never occur in quoted-printable or base64 text (RFC 2045 section 6.7).
        return f"=_rc{self.rng.getrandbits(64):016x}"

    def _multipart(self, subtype: str, parts: list[_Part], extra: str = "") -> _Part:
        boundary = self._boundary()
        return _Part(
            [f'Content-Type: multipart/{subtype};{extra}\r\n boundary="{boundary}"'],
            parts=parts,
            boundary=boundary,
        )

    def _finish(self, draft: _Draft, when: datetime) -> GeneratedMessage:
        lang = LANGUAGES.get(draft.language, _EN)
        sender = draft.sender
        display = draft.display_sender or sender.name
        sender_email = draft.sender_email or sender.email
        names = [display] + [p.name for p in draft.to + draft.cc]
        charset, cte = draft.charset, draft.cte
        if not charset:
            if sender.role == "staff" or sender is self.mailbox_staff:
                charset = "utf-8"
                cte = "quoted-printable" if lang.code in ("en", "de", "fr", "es") else "base64"
                if draft.text.isascii() and draft.subject.isascii():
                    charset, cte = "us-ascii", "7bit"
            else:
                charset, cte = self._pick_charset(lang, draft.text, draft.subject, *names)
        try:
            "".join(names).encode(charset)
            header_charset = charset
        except UnicodeEncodeError:
            header_charset = "utf-8"
        local = self._local_time(sender, when)
        client = self._client(sender)

        headers: list[str] = []
        if draft.folder == INBOX:
            mx = f"mx1.{self.mailbox_domain}"
            received_at = format_datetime(
                (when + timedelta(seconds=self.rng.randrange(2, 90))).astimezone(UTC)
            )
            ip = f"203.0.113.{self.rng.randrange(2, 250)}"
            sender_host = "mail." + sender_email.rpartition("@")[2]
            headers += [
                f"Return-Path: <{'' if draft.kind == 'bounce' else sender_email}>",
                f"Delivered-To: {self.mailbox}",
                f"Received: from {mx} by imap.{self.mailbox_domain} with LMTP id "
                f"{self.rng.getrandbits(48):012x}\r\n\tfor <{self.mailbox}>; {received_at}",
            ]
            if draft.kind != "bounce":  # a bounce is born on our own MX
                headers += [
                    f"Received: from {sender_host} ({sender_host} [{ip}])\r\n\tby {mx} "
                    f"(Postfix) with ESMTPS id {self.rng.getrandbits(40):010X}\r\n\tfor "
                    f"<{self.mailbox}>; {received_at}",
                    f"Authentication-Results: {mx}; spf=pass smtp.mailfrom={sender_email};\r\n"
                    f"\tdkim=pass header.d={sender_email.rpartition('@')[2]}",
                ]
        headers.append(_address_header("From", [_address(display, sender_email, header_charset)]))
        if draft.to_override:
            headers.append(f"To: {draft.to_override}")
        elif draft.to:
            headers.append(
                _address_header(
                    "To",
                    [
                        _address(
                            p.name if p is not self.mailbox_staff else "Relay Support",
                            p.email,
                            header_charset,
                        )
                        for p in draft.to
                    ],
                )
            )
        if draft.cc:
            headers.append(
                _address_header("Cc", [_address(p.name, p.email, header_charset) for p in draft.cc])
            )
        headers.append(_unstructured("Subject", draft.subject, header_charset))
        headers.append(f"Date: {format_datetime(local)}")
        message_id = ""
        for extra in draft.extra_headers:
            if extra.startswith("Message-ID: "):
                message_id = extra[len("Message-ID: ") :]
        if not message_id:
            message_id = self._message_id(sender, when)
            draft.extra_headers.insert(0, f"Message-ID: {message_id}")
        headers.append(f"Message-ID: {message_id}")
        if draft.in_reply_to:
            headers.append(f"In-Reply-To: {draft.in_reply_to}")
            headers.append(_fold_words("References", draft.references))
        headers += [h for h in draft.extra_headers if not h.startswith("Message-ID: ")]
        if client == "outlook":
            headers += ["X-Mailer: Microsoft Outlook 16.0", f"Content-Language: {lang.code}"]
            if draft.in_reply_to:
                headers.append(f"Thread-Index: {base64.b64encode(self.rng.randbytes(22)).decode()}")
        elif client == "thunderbird":
            headers.append("User-Agent: Mozilla Thunderbird")
        elif client == "apple":
            headers.append("X-Mailer: Apple Mail (2.3774.500.171.1.1)")
        elif client == "relay":
            headers.append("X-Mailer: Relay CRM")
        headers.append("MIME-Version: 1.0")

        body = draft.body_override or self._body(draft, charset, cte, client)
        top = _Part(headers + body.headers, body.body, body.parts, body.boundary)
        raw = top.to_bytes()
        flags = self._flags(draft, when)
        return GeneratedMessage(
            folder=draft.folder,
            raw=raw,
            flags=flags,
            date=local,
            message_id=message_id,
            kind=draft.kind,
            sender=sender_email,
            subject=draft.subject,
            text=draft.text,
            language=draft.language,
            charset=charset,
            in_reply_to=draft.in_reply_to,
            references=tuple(draft.references),
            ticket=draft.ticket,
            has_html=bool(draft.html),
            attachments=tuple(draft.attachment_names),
        )

    def _body(self, draft: _Draft, charset: str, cte: str, client: str) -> _Part:
        plain = _text_part(draft.text, "plain", charset, cte)
        html_text = draft.html
        if not html_text and client in ("outlook", "gmail", "apple") and self._chance(0.6):
            html_text = self._html_from_text(draft.text, client, charset)
        if html_text:
            html_part = _text_part(html_text, "html", charset, cte)
            related = list(draft.related)
            if not related and client == "outlook" and self._chance(0.3):
                cid = f"image001.png@01DA{self.rng.getrandbits(32):08X}.{self.rng.getrandbits(32):08X}"  # noqa: E501
                html_text = html_text.replace(
                    "</div>\n</body>",
                    f'<p class="MsoNormal"><img width="48" height="16" src="cid:{cid}"></p>'
                    "</div>\n</body>",
                )
                html_part = _text_part(html_text, "html", charset, cte)
                related = [
                    _binary_part(_SIGNATURE_PNG, "image/png", "image001.png", inline_cid=cid)
                ]
            if related:
                html_part = self._multipart("related", [html_part, *related], ' type="text/html";')
            body = self._multipart("alternative", [plain, html_part])
            draft.html = html_text
        else:
            body = plain
        if draft.attachments:
            body = self._multipart("mixed", [body, *draft.attachments])
        return body

    def _flags(self, draft: _Draft, when: datetime) -> tuple[str, ...]:
        if draft.folder == SENT:
            return (SEEN,)
        flags = set(draft.flags_hint)
        recent = self.start - when < timedelta(days=3)
        if draft.kind in ("newsletter", "list") and SEEN not in flags:
            pass
        elif recent:
            if self._chance(0.35):
                flags.add(SEEN)
        elif self._chance(0.96):
            flags.add(SEEN)
        if draft.kind in ("request", "reply") and self._chance(0.05):
            flags.add(FLAGGED)
        return tuple(f for f in (ANSWERED, FLAGGED, SEEN) if f in flags)


def generate(
    count: int,
    *,
    seed: int = 1,
    start: datetime | None = None,
    mailbox_address: str = "support@relay.example",
    people: list[Person] | None = None,
    attachment_max_bytes: int = 2_000_000,
    span_days: int = 120,
) -> Iterator[GeneratedMessage]:
    """Yield `count` messages, oldest first, dated over the `span_days` before `start`.

    INBOX mail is addressed to `mailbox_address`; staff replies (folder "Sent") come from it.
    `people` defaults to `demo_people()`: those with role "staff" answer, the others write in.
    Attachments are mostly a few KB, some hundreds of KB, a few up to `attachment_max_bytes`.
    The same arguments always give byte-identical messages."""
    if count < 0:
        raise ValueError("count must not be negative")
    if count == 0:
        return iter(())
    generator = _Generator(
        count,
        seed,
        start or DEFAULT_START,
        mailbox_address,
        list(people) if people is not None else list(_PEOPLE),
        attachment_max_bytes,
        span_days,
    )
    return generator.run()
