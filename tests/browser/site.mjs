// Drives the docs site in headless Chromium as a user would: opens it from
// disk, checks the page logs no error, clicks kpis_produit in the DAG,
// follows the lineage of its columns to orders_clean, and reads each
// entity's reject rate off the quality report.
//
// node site.mjs <site dir> <expected rates as JSON: {entity: "3.00%"}> <screenshot dir>
// Prints one JSON object; exits 1 on the first step that fails.
import { chromium } from "playwright-core";
import path from "node:path";
import fs from "node:fs";

const [siteDir, expectedJson, shots] = process.argv.slice(2);
const expected = JSON.parse(expectedJson);
fs.mkdirSync(shots, { recursive: true });
const errors = [];
const steps = [];
const fail = (why) => {
  console.log(JSON.stringify({ ok: false, why, steps, errors }));
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  // Nothing may be fetched from the network: every request is a file.
  page.on("request", (r) => { if (!r.url().startsWith("file://")) errors.push(`network request: ${r.url()}`); });
  await page.goto("file://" + path.resolve(siteDir, "index.html"));

  // The DAG, laid out.
  await page.waitForFunction(() => window.etlCy && window.etlCy.nodes().length > 0, null, { timeout: 15000 });
  const count = await page.evaluate(() => window.etlCy.nodes().length);
  steps.push(`graph drawn with ${count} nodes`);
  await page.screenshot({ path: path.join(shots, "graph.png") });

  // Click kpis_produit where it is drawn.
  const id = "model.shop.kpis_produit";
  const at = await page.evaluate((id) => {
    const cy = window.etlCy;
    const node = cy.getElementById(id);
    cy.center(node);
    const p = node.renderedPosition();
    const box = cy.container().getBoundingClientRect();
    return { x: box.left + p.x, y: box.top + p.y };
  }, id);
  await page.mouse.move(at.x, at.y);
  await page.waitForTimeout(200);
  const lit = await page.evaluate(() => window.etlCy.elements(".faded").length);
  if (lit === 0) fail("hovering kpis_produit fades nothing: its ancestors and descendants are not highlighted");
  steps.push(`hover highlights kpis_produit's lineage (${lit} elements faded)`);
  await page.mouse.click(at.x, at.y);
  await page.waitForSelector("#node-title", { timeout: 5000 });
  const title = await page.textContent("#node-title");
  if (!title.startsWith("kpis_produit")) fail(`clicking kpis_produit opened ${title}`);
  steps.push("clicked kpis_produit in the DAG");
  await page.screenshot({ path: path.join(shots, "kpis_produit.png"), fullPage: true });

  // Its revenue column comes from product_days.revenue.
  await page.click('tr[data-name="revenue"] a[data-column="revenue"]');
  await page.waitForFunction(() => document.querySelector("#node-title")?.textContent.startsWith("product_days"));
  steps.push("followed revenue's lineage to product_days");
  // product_days' watermark comes from orders_clean.
  await page.click('tr[data-name="orders_loaded_at"] a[data-column="loaded_at"]');
  await page.waitForFunction(() => document.querySelector("#node-title")?.textContent.startsWith("orders_clean"));
  const highlighted = await page.textContent("tr.highlight td code");
  if (highlighted !== "loaded_at") fail(`orders_clean's page highlights ${highlighted}, not loaded_at`);
  steps.push("followed orders_loaded_at's lineage to orders_clean.loaded_at");

  // The quality report.
  await page.click("#nav-quality");
  await page.waitForSelector("#reject-rates");
  const rates = await page.evaluate(() =>
    Object.fromEntries([...document.querySelectorAll("#reject-rates tr[data-entity]")].map((tr) => [tr.dataset.entity, tr.querySelector(".rate")?.textContent])),
  );
  for (const [entity, rate] of Object.entries(expected)) {
    if (rates[entity] !== rate) fail(`the quality report shows ${entity} at ${rates[entity]}, the build printed ${rate}`);
  }
  steps.push(`reject rates equal to the build's: ${JSON.stringify(rates)}`);
  await page.screenshot({ path: path.join(shots, "quality.png") });

  // The selection filter.
  await page.click("#nav-graph");
  await page.fill("#select", "+kpis_produit");
  await page.click("#apply");
  const selected = await page.evaluate(() => window.etlCy.nodes().length);
  if (!(selected > 1 && selected < count)) fail(`+kpis_produit shows ${selected} of ${count} nodes`);
  steps.push(`+kpis_produit shows ${selected} nodes`);

  if (errors.length) fail("the page logged errors");
  console.log(JSON.stringify({ ok: true, steps, errors }));
} finally {
  await browser.close();
}
