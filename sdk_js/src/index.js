// ES module entry: the page's instance (browser globals, taken at init) and the factory.
import { createSegserver } from "./sdk.js";

export { createSegserver };
export default createSegserver();
