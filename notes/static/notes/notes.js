// The mention picker (notes/templates/notes/_panel.html): choosing a person replaces the @name
// being typed at the end of the note with their username.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-mention]");
  if (!button) return;
  const form = button.closest("form");
  const box = form && form.querySelector("textarea[name=body]");
  if (!box) return;
  box.value = box.value.replace(/@[\w.+-]*$/, "") + "@" + button.dataset.mention + " ";
  const list = button.closest(".notes-suggest");
  if (list) list.replaceChildren();
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
});
