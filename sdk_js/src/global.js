// Classic-script entry: window.segserver (a second copy of the script keeps the first).
import { createSegserver } from "./sdk.js";

const w = window;
if (!(w.segserver && w.segserver.init)) w.segserver = createSegserver();
