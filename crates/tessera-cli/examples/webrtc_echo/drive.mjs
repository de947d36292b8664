// Opens echo.html in headless Chromium: node drive.mjs URL as=peer|coordinator
// Needs playwright-core (npm) and Debian's chromium. Loopback only.
import { chromium } from "playwright-core";
const [url, as] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
  args: ["--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-quic", "--allow-loopback-in-peer-connection"],
});
const origin = new URL(url).origin;
const ctx = await browser.newContext();
await ctx.grantPermissions(["microphone"], { origin });
const page = await ctx.newPage();
page.on("console", (m) => console.log("[page]", m.text()));
const u = new URL(url); u.pathname = "/echo.html"; u.searchParams.set("as", as);
await page.goto(u.toString());
await page.waitForFunction(() => document.title === "closed" || document.title === "error", null, { timeout: 120000 }).catch(() => {});
await browser.close();
