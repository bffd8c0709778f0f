import { joinPlacement, placementPicker, splitPlacement } from "./placement";

describe("placement picker", () => {
  it("splits and joins placements", () => {
    expect(splitPlacement("auto")).toEqual({ choice: "auto", layers: "" });
    expect(splitPlacement("stream")).toEqual({ choice: "stream", layers: "" });
    expect(splitPlacement("layers:18")).toEqual({ choice: "layers", layers: "18" });
    expect(splitPlacement("layers")).toEqual({ choice: "auto", layers: "" });
    expect(joinPlacement("gpu", "12")).toBe("gpu");
    expect(joinPlacement("layers", " 12 ")).toBe("layers:12");
  });

  it("shows the layer count only for a layer split", () => {
    const seen: string[] = [];
    const picker = placementPicker("cpu", "p", (t) => seen.push(t));
    const select = picker.root.querySelector("select") as HTMLSelectElement;
    const layers = picker.root.querySelector("[data-testid=p-layers]") as HTMLInputElement;
    expect(select.value).toBe("cpu");
    expect(layers.hidden).toBe(true);
    select.value = "layers";
    select.dispatchEvent(new Event("change"));
    expect(layers.hidden).toBe(false);
    layers.value = "20";
    layers.dispatchEvent(new Event("input"));
    expect(picker.value()).toBe("layers:20");
    expect(seen).toEqual(["layers:", "layers:20"]);
  });
});
