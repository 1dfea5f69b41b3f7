/* The compose page: warn when a personal address is chosen to answer a shared mailbox's
   conversation (docs/product.md §5.4). Loaded as a file (CSP script-src 'self'). */
(function () {
  "use strict";
  var select = document.querySelector("select[data-warn-personal]");
  var warning = document.getElementById("personal-sender-warning");
  if (!select || !warning) {
    return;
  }
  function update() {
    var option = select.options[select.selectedIndex];
    warning.hidden = !(option && option.hasAttribute("data-personal"));
  }
  select.addEventListener("change", update);
  update();
})();
