"""The composer's HTML made safe on the server (docs/reliability.md X-20, X-15), its plain-text
alternative, and the composer's pages without JavaScript: drafts saved by hand, listed at a
fixed number of queries, "Send without a subject?" asked by the form (docs/product.md §5.5)."""

from __future__ import annotations

import base64

import pytest
from django.urls import reverse

from inbox.models import Draft, OutboxEntry
from inbox.richtext import clean_composed_html, inline_images, text_from_html
from inbox.services.composing import quote_html
from inbox.services.drafts import draft_save
from tests.inbox import mailkit

HOSTILE = [
    ("<script>alert(1)</script>ok", "<script"),
    ('<img src=x onerror="alert(1)">', "onerror"),
    ('<a href="javascript:alert(1)">x</a>', "javascript:"),
    ('<a href=" jav&#x09;ascript:alert(1)">x</a>', "ascript:"),
    ('<a href="data:text/html,<script>alert(1)</script>">x</a>', "data:text"),
    ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "svg"),
    ('<img src="https://tracker.example/p.gif">', "tracker.example"),
    ("<iframe src='https://evil.example'></iframe>", "<iframe"),
    ("<style>body{display:none}</style>", "<style"),
    ('<div style="background:url(https://evil.example)">x</div>', "evil.example"),
    ("<form action=https://evil.example><input name=p></form>", "<form"),
    ('<svg><a xlink:href="javascript:alert(1)">x</a></svg>', "javascript"),
    ('<b onmouseover="alert(1)">hover</b>', "onmouseover"),
    ('<a href="/admin/">relative</a>', 'href="/admin/"'),
    ("<math><mi xlink:href='javascript:alert(1)'>x</mi></math>", "javascript"),
]


@pytest.mark.parametrize("markup,forbidden", HOSTILE)
def test_the_allow_list_drops_every_vector(markup, forbidden):
    cleaned = clean_composed_html(markup)
    assert forbidden not in cleaned.lower()
    assert clean_composed_html(cleaned) == cleaned  # a fixed point


def test_formatting_links_and_pasted_images_survive():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20).decode()
    markup = (
        "<div><b>bold</b> <i>it</i> <u>u</u></div><ol><li>one</li></ol>"
        '<a href="https://acme.example/x">site</a> <a href="mailto:a@acme.example">mail</a>'
        f'<img src="data:image/png;base64,{png}"><img src="cid:part1@x">'
    )
    cleaned = clean_composed_html(markup)
    for kept in ("<b>bold</b>", "<i>it</i>", "<u>u</u>", "<ol><li>one</li></ol>",
                 'href="https://acme.example/x"', 'href="mailto:a@acme.example"',
                 "data:image/png;base64,", 'src="cid:part1@x"'):  # fmt: skip
        assert kept in cleaned, kept
    html, parts = inline_images(cleaned, domain="relay.test")
    assert "data:image" not in html and len(parts) == 1
    filename, content_type, data, cid = parts[0]
    assert content_type == "image/png" and data.startswith(b"\x89PNG")
    assert f'src="cid:{cid}"' in html and cid.endswith("@relay.test")


def test_an_image_that_is_not_what_it_says_is_dropped_not_attached():
    fake = base64.b64encode(b"<html><script>alert(1)</script>").decode()
    html, parts = inline_images(f'<img src="data:image/png;base64,{fake}">', domain="x")
    assert parts == [] and "script" not in html


def test_the_text_alternative_keeps_lists_links_and_the_signature_separator():
    text = text_from_html(
        "<div>Hello <b>Ana</b>,</div><ul><li>one</li><li>two</li></ul><ol><li>a</li></ol>"
        '<div><a href="https://acme.example/help">help</a></div><div>-- <br>Acme</div>'
    )
    assert text == ("Hello Ana,\n- one\n- two\n1. a\nhelp <https://acme.example/help>\n-- \nAcme\n")


@pytest.mark.django_db
def test_a_hostile_original_is_quoted_as_text(personal_mailbox):
    folders = mailkit.folders(personal_mailbox)
    (message,) = mailkit.conversation(folders["inbox"], subject="Hi", name="<b>Eve</b>")
    message.text_body = '<script>alert(1)</script>\n<img src=x onerror="alert(2)">'
    quoted = quote_html(message)
    assert "<script" not in quoted and "<img" not in quoted
    assert "&lt;script&gt;" in quoted and "&lt;b&gt;Eve&lt;/b&gt;" in quoted


# --- The composer's pages without JavaScript -----------------------------------------------


@pytest.fixture
def olivia(client, owner):
    client.force_login(owner)
    return client


@pytest.mark.django_db
def test_without_javascript_no_subject_is_asked_and_a_draft_is_saved_by_hand(
    olivia, owner, personal_mailbox
):
    compose = reverse("inbox:compose")
    form = {"mailbox": personal_mailbox.pk, "to": "ana@acme.example", "body": "Hello"}
    response = olivia.post(compose, form)
    assert response.status_code == 422
    html = response.content.decode()
    assert "Send without a subject?" in html and 'name="confirm_no_subject" value="1"' in html
    assert "Hello" in html and not OutboxEntry.objects.exists() and not Draft.objects.exists()

    response = olivia.post(compose, {**form, "action": "save_draft"})
    draft = Draft.objects.get(user=owner)
    assert response.status_code == 302 and response["Location"].endswith(f"?draft={draft.pk}")
    assert draft.body_text == "Hello" and draft.to == "ana@acme.example"
    html = olivia.get(response["Location"]).content.decode()
    assert f'name="draft" value="{draft.pk}"' in html and "Hello" in html

    response = olivia.post(compose, {**form, "draft": draft.pk, "confirm_no_subject": "1"})
    assert response.status_code == 302
    entry = OutboxEntry.objects.get()
    assert entry.subject == "" and entry.state == OutboxEntry.State.SCHEDULED
    assert Draft.objects.get().sent_entry_id == entry.pk  # hidden while held
    assert "Hello" not in olivia.get(reverse("inbox:drafts")).content.decode()


@pytest.mark.django_db
def test_hostile_html_posted_by_hand_is_stored_and_shown_sanitised(olivia, owner, personal_mailbox):
    response = olivia.post(
        reverse("inbox:compose"),
        {
            "mailbox": personal_mailbox.pk,
            "to": "not an address",
            "subject": "x",
            "body_html": '<b>ok</b><img src=x onerror="alert(1)"><script>alert(2)</script>',
            "action": "save_draft",
        },
    )
    draft = Draft.objects.get(user=owner)
    assert draft.body_html == "<b>ok</b><img>"
    html = olivia.get(response["Location"]).content.decode()
    assert "onerror" not in html and "alert(2)" not in html
    response = olivia.post(
        reverse("inbox:compose"),
        {"mailbox": personal_mailbox.pk, "to": "bad", "subject": "x", "body_html": "<script>x"},
    )
    assert response.status_code == 422 and "&lt;script" not in response.content.decode()


@pytest.mark.django_db
def test_the_drafts_page_lists_only_ones_own_at_a_fixed_number_of_queries(
    olivia, owner, teammate, personal_mailbox, django_assert_max_num_queries
):
    draft_save(user=teammate, subject="Not hers", body_text="x")
    draft_save(user=owner, mailbox=personal_mailbox, subject="First", body_text="x")
    with django_assert_max_num_queries(12) as few:
        html = olivia.get(reverse("inbox:drafts")).content.decode()
    assert "First" in html and "Not hers" not in html
    folders = mailkit.folders(personal_mailbox)
    for n in range(15):
        (message,) = mailkit.conversation(folders["inbox"], subject=f"S{n}")
        draft_save(
            user=owner, message=message, mode="reply", mailbox=personal_mailbox, body_text="y"
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = olivia.get(reverse("inbox:drafts")).content.decode()
    assert html.count('class="relay-draft"') == 16


@pytest.mark.django_db
def test_cancelling_a_held_message_takes_its_draft_with_it(owner, personal_mailbox):
    from inbox.services.composing import outbox_compose
    from inbox.services.outbox import outbox_cancel

    draft = draft_save(user=owner, mailbox=personal_mailbox, subject="Held", body_text="x")
    entry = outbox_compose(
        user=owner,
        mailbox=personal_mailbox,
        to="ana@acme.example",
        subject="Held",
        text_body="x",
        hold=True,
        draft=draft,
    )
    assert entry.state == OutboxEntry.State.SCHEDULED
    assert Draft.objects.get().sent_entry_id == entry.pk
    outbox_cancel(user=owner, entry=entry)
    entry.refresh_from_db()
    assert entry.state == OutboxEntry.State.CANCELLED and entry.text_body == "x"
    assert not Draft.objects.exists()
