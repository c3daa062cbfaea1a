/* Site-wide fixes for the course book, loaded on every page (see _config.yml).
 *
 * The phone navigation button. pydata-sphinx-theme 0.17 adds its own sidebar
 * button to the top bar, hidden under sphinx-book-theme, and then wires only
 * the FIRST element with class "primary-toggle" (and "secondary-toggle"): the
 * hidden one. The visible button in the article header gets no listener, so at
 * phone widths tapping it did nothing (pydata-sphinx-theme issue 2451). Here a
 * click on any later button of the pair is handed to the first one, which both
 * themes did wire, so the sidebar opens as the themes intend on every width.
 * Where a theme version wires every button itself, there is only one button or
 * the first one is the visible one, and this does nothing.
 */
(function () {
  "use strict";
  function forward(selector) {
    var buttons = document.querySelectorAll(selector);
    if (buttons.length < 2) return;
    var wired = buttons[0];
    Array.prototype.slice.call(buttons, 1).forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        event.stopPropagation();
        wired.click();
      });
    });
  }
  function start() {
    forward(".primary-toggle");
    forward(".secondary-toggle");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
